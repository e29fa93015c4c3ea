#!/usr/bin/env bash
# The end-to-end demo behind `make demo`, on the embedded server (or DATABASE_URL when set).
set -euo pipefail
pe() { echo; echo "\$ pyembed-db $*"; .venv/bin/pyembed-db "$@"; }

# --- foundation: server, schema, data -------------------------------------------------------
pe server start
pe migrate
pe load movielens
pe status

# --- embedding (issue 3) ----------------------------------------------------------------------

# --- search (issue 4) -------------------------------------------------------------------------

# --- users and recommendations (issue 5) ------------------------------------------------------
