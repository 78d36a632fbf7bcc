//! `remus-ckpt plot`: stacked panels per run.
