//! The CLI's log lines on standard error: plain text when it is not a
//! terminal (a pipe, a log file), coloured on a terminal unless `NO_COLOR`
//! is set to something non-empty. The log line is a real warning: an
//! `echo-server` refusing a client with the wrong secret.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use switchboard::{Connector, Secret};

const CLI: &str = env!("CARGO_BIN_EXE_switchboard");

/// Runs `switchboard echo-server` with its stderr on `stderr` (whose far
/// end is `output`) and `NO_COLOR` as given, makes it refuse one client,
/// stops it once it has said so, and returns what it wrote there.
fn refuse_one_client(
    stderr: Stdio,
    mut output: impl Read + Send + 'static,
    no_color: Option<&str>,
) -> String {
    let mut command = Command::new(CLI);
    command
        .arg("echo-server")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let mut server = command.spawn().unwrap();
    // Our copy of the far end must go, or the output never ends.
    drop(command);
    let (said, refused) = mpsc::channel();
    let reading = std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut chunk = [0; 4096];
        // A terminal's end reads as an error (EIO) once the server exits.
        while let Ok(n @ 1..) = output.read(&mut chunk) {
            text.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&text).contains("refused a client") {
                let _ = said.send(());
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let wrong = Connector::load_state(line.trim())
        .unwrap()
        .with_secret(Secret::from_bytes(vec![7; 32]).unwrap());
    assert!(switchboard::blocking::Client::connect(&wrong).is_err());
    // The server logs the refusal on its own time; then closing its stdin
    // stops it.
    let logged = refused.recv_timeout(Duration::from_secs(30));
    drop(server.stdin.take());
    assert!(server.wait().unwrap().success());
    let text = reading.join().unwrap();
    assert!(logged.is_ok(), "no refusal logged: {text:?}");
    text
}

#[test]
fn warnings_into_a_pipe_carry_no_colour_codes() {
    let (reader, writer) = std::io::pipe().unwrap();
    let text = refuse_one_client(Stdio::from(writer), reader, None);
    assert!(text.contains("WARN"), "{text:?}");
    assert!(!text.contains('\x1b'), "{text:?}");
}

/// On a terminal (a pseudo-terminal here), as a person running it sees it.
#[cfg(target_os = "linux")]
mod on_a_terminal {
    use std::fs::File;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::Stdio;

    use super::refuse_one_client;

    /// What the server wrote to its terminal, with `NO_COLOR` as given.
    fn terminal_output(no_color: Option<&str>) -> String {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two descriptors into the two ints; the
        // name and settings pointers may be null.
        let made = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(made, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both were just opened for us and are owned nowhere else.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        refuse_one_client(Stdio::from(slave), File::from(master), no_color)
    }

    #[test]
    fn warnings_on_a_terminal_are_coloured() {
        let text = terminal_output(None);
        assert!(text.contains("refused a client"), "{text:?}");
        assert!(text.contains("\x1b["), "{text:?}");
        // An empty NO_COLOR is as good as none (no-color.org).
        assert!(terminal_output(Some("")).contains("\x1b["));
    }

    #[test]
    fn no_color_turns_colour_off_even_on_a_terminal() {
        let text = terminal_output(Some("1"));
        assert!(text.contains("refused a client"), "{text:?}");
        assert!(!text.contains('\x1b'), "{text:?}");
    }
}
