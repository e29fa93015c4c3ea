select functions_sha256, package_version, applied_at from pyembed.installation
