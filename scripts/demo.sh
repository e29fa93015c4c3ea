#!/usr/bin/env bash
# The end-to-end demo behind `make demo`, on the embedded server (or DATABASE_URL when set).
set -euo pipefail
pe() { echo; echo "\$ pyembed-db $*"; .venv/bin/pyembed-db "$@"; }

# --- server, schema, data ---------------------------------------------------------------------
pe server start
pe migrate
pe load movielens
pe status

# --- embedding ---------------------------------------------------------------------------------
# The default model: all-MiniLM-L6-v2 exported from its safetensors checkpoint to ONNX, fp32 and a
# selectively quantized int8 (both checked against PyTorch), int8 activated. Once: a second run
# finds both registered and only re-checks them.
pe model export --default-checkpoint --quantize --register --activate int8
pe embed --all
pe model list

# --- search: filtered, more like this, hybrid, with the chosen strategy -----------------------
pe search "space adventure" --k 5
pe search "space adventure" --k 5 --filter '{"tags": {"contains": ["Sci-Fi"]}}'
pe search "a funny love story" --k 5 --filter '{"category": "Comedy", "created_at": {"gte": "1996-01-01T00:00:00Z"}}'
pe search --similar-to 50 --k 5
pe search "star wars" --hybrid --k 5
pe search "space adventure" --k 5 --exclude-user 1 --filter '{"tags": {"overlaps": ["Sci-Fi", "Adventure"]}}'
pe search "space adventure" --filter '{"tags": {"contains": ["Sci-Fi"]}}' --explain
pe search "space adventure" --explain

# --- users and recommendations ------------------------------------------------------------------
pe refresh-users
pe train                                  # behavior vectors + fusion chosen on validation
pe recommend 1 --k 8 --history 8          # the default: the method that won on validation
pe recommend 1 --k 8 --method text        # the text vectors only, for comparison
pe recommend 42 --k 8 --history 8 --diversity 0.3
pe recommend 405 --k 5 --history 5 --filter '{"category": "Comedy"}'
pe evaluate --holdout 10 --k 10 --methods all
