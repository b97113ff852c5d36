"""The `select` stage: detector files in, a stratified, sequence-aware candidate set out."""
