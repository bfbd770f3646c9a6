"""Deduplication, by stage: `settings` (the spec's dedup section), `minhash` (normalized text, shingles, signatures),
`lsh` (bands, candidate pairs, union-find, exact Jaccard), `passes` (the signature pass and the global decision)."""
