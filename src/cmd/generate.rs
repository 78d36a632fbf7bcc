//! `remus-ckpt generate-assets DIR` (hidden): the manual pages and shell
//! completions, generated from the command line definition so that they
//! cannot drift from `--help`. scripts/build-deb runs it for the package;
//! nothing it writes is committed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write `man/*.1` and `completions/{bash,zsh,fish}` into.
    #[arg(value_name = "DIR")]
    pub out_dir: PathBuf,
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let man = args.out_dir.join("man");
    let completions = args.out_dir.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("cannot write the manual pages into {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        write_completion(shell, &completions)?;
    }
    eprintln!(
        "remus-ckpt: manual pages in {}, completions in {}",
        man.display(),
        completions.display()
    );
    Ok(())
}

fn write_completion(shell: Shell, dir: &Path) -> Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate_to(shell, &mut cmd, "remus-ckpt", dir)
        .with_context(|| format!("cannot write the {shell} completion into {}", dir.display()))?;
    Ok(())
}
