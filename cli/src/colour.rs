//! Whether the diagnostics on standard error may carry ANSI colour: only
//! when it is a terminal, and never when `NO_COLOR` is set to anything
//! non-empty (<https://no-color.org>). Piped into a log file, escape codes
//! show up as `[2m...[0m` noise.

use std::io::IsTerminal;

/// True if the log lines on stderr may be coloured.
pub fn on_stderr() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    !no_color && std::io::stderr().is_terminal()
}
