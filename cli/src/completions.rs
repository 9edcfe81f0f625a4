//! `switchboard completions`: the shell completion scripts clap generates.

use clap::CommandFactory;

use crate::args::Cli;

pub(crate) const COMPLETIONS_HELP: &str = "\
Examples:
  switchboard completions bash > ~/.local/share/bash-completion/completions/switchboard
  switchboard completions zsh > ~/.zfunc/_switchboard
  switchboard completions fish > ~/.config/fish/completions/switchboard.fish
  switchboard completions powershell >> $PROFILE

Exit codes:
  0  success
  2  bad input: an unknown shell";

/// Prints the completion script for `shell` to standard output.
pub(crate) fn print(shell: clap_complete::Shell) {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "switchboard",
        &mut std::io::stdout(),
    );
}
