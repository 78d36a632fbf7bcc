//! `remus-ckpt report`: one summary row per run.
