#!/bin/sh
# MovieLens end to end with the cooccur CLI only (no code): map the CSV files to events,
# evaluate and tune on the event store, train on it, index, recommend. README.md explains.
#
#   examples/movielens/run.sh ML_DIR [OUT_DIR]
#
# ML_DIR holds ratings.csv, tags.csv and movies.csv (ml-latest-small, or the small cut of it
# in examples/movielens/sample); everything is written under OUT_DIR (default
# movielens-output). tests/test_examples.py runs the `cooccur ...` lines below on the sample.
set -eu
DATA=$(cd "${1:?usage: run.sh ML_DIR [OUT_DIR]}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${2:-movielens-output}
USERS=${USERS:-300}
cooccur() { "${COOCCUR:-cooccur}" -c "$HERE/cooccur.toml" "$@"; }
mkdir -p "$OUT" && cd "$OUT" && rm -rf cooccur-data model

# 1. Events: every rating is a `rate`, a rating >= 4 also a `like`; a tag is a `tag`;
#    movies.csv gives each movie a title and its genres as the `category` list.
cooccur events import "$DATA/ratings.csv" --map "$HERE/ratings.toml"
cooccur events import "$DATA/tags.csv" --map "$HERE/tags.toml"
cooccur events import "$DATA/movies.csv" --map "$HERE/movies.toml"

# 2. Quality on the store's events: the last 5 likes of each user held out.
cooccur evaluate --from-store --split leave-last:5 -k 10 --users "$USERS" --out evaluation.json
cooccur tune --from-store --split leave-last:5 --users "$USERS" --rounds 1 -o tuned.toml

# 3. Train on the store, index, recommend (titles and genres shown from the index).
cooccur train --from-store -o model
cooccur index model
cooccur recommend --user 1 --num 10 --show title --show category
cooccur recommend --item 1 --num 5 --show title
cooccur recommend --user 1 --num 5 --field category:Animation:3 --format csv --show title

# 4. Serve it (Ctrl-C stops): POST /queries.json, the event API, /stats, /metrics.
echo "serve with: cd $OUT && ${COOCCUR:-cooccur} -c $HERE/cooccur.toml serve --port 8000" >&2
