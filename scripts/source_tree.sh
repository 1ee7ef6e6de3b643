# Sourced by the GPU scripts, from the repository root: makes the checkout importable as menagerie.* without
# installing it (the lent GPU machines have no network and run a copy of the tree). A temporary folder holds a
# `menagerie` namespace package whose four subpackages are links to the checkout's folders; the checkout itself
# stays off the path, so its kernels/ folder is never importable as a bare `kernels`.
menagerie_tree=$(mktemp -d)
mkdir "$menagerie_tree/menagerie"
for folder in harness kernels models benchmarks; do ln -s "$PWD/$folder" "$menagerie_tree/menagerie/$folder"; done
export PYTHONPATH="$menagerie_tree${PYTHONPATH:+:$PYTHONPATH}"
