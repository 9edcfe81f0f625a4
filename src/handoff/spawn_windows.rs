//! Spawning a child on Windows that inherits exactly its channel's end and
//! its standard streams: a `PROC_THREAD_ATTRIBUTE_HANDLE_LIST` passed to
//! our own `CreateProcessW`, since std's `Command` can pass that attribute
//! only on nightly (`raw_attribute`, rust-lang/rust#114854). Without the
//! list, `CreateProcessW` hands the child every inheritable handle of the
//! parent.
//!
//! A `Command` is read back through its getters (program, arguments,
//! environment changes, directory): what std gives no getter for (standard
//! streams, `env_clear`, creation flags, raw arguments) cannot be honoured
//! and is documented on `CommandExt::spawn_with_channel`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{FromRawHandle, OwnedHandle, RawHandle};
use std::path::{Path, PathBuf};
use std::process::Command;

use windows_sys::Win32::Foundation::{
    CloseHandle, DUPLICATE_SAME_ACCESS, DuplicateHandle, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Console::{
    GetStdHandle, STD_ERROR_HANDLE, STD_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::Threading::{
    CREATE_UNICODE_ENVIRONMENT, CreateProcessW, DeleteProcThreadAttributeList,
    EXTENDED_STARTUPINFO_PRESENT, GetCurrentProcess, InitializeProcThreadAttributeList,
    LPPROC_THREAD_ATTRIBUTE_LIST, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROCESS_INFORMATION,
    STARTF_USESTDHANDLES, STARTUPINFOEXW, UpdateProcThreadAttribute,
};

use super::channel_child::ChannelChild;
use crate::connector::ChildChannel;

/// Spawns `command`'s program with `channel`'s end and this process's
/// standard streams as the only handles it inherits.
pub(crate) fn spawn(command: &Command, channel: ChildChannel) -> io::Result<ChannelChild> {
    let program = command.get_program();
    let fail = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!(
                "spawning {} with a channel: {what}: {e}",
                Path::new(program).display()
            ),
        )
    };
    let envs: Vec<(OsString, Option<OsString>)> = command
        .get_envs()
        .map(|(key, value)| (key.to_owned(), value.map(OsStr::to_owned)))
        .collect();
    let application = resolve(program, &envs).map_err(|e| fail("finding the program", e))?;
    let application =
        wide(application.as_os_str(), "the program's path").map_err(|e| fail("the program", e))?;
    let mut line =
        command_line(program, command.get_args()).map_err(|e| fail("the command line", e))?;
    let environment =
        environment_block(std::env::vars_os(), &envs).map_err(|e| fail("the environment", e))?;
    let directory = command
        .get_current_dir()
        .map(|dir| wide(dir.as_os_str(), "the current directory"))
        .transpose()
        .map_err(|e| fail("the current directory", e))?;
    let streams = Streams::duplicate().map_err(|e| fail("the standard streams", e))?;

    // The end is inheritable from here until the guard drops, as short a
    // time as can be: the list keeps it from this child's siblings, but a
    // process another thread spawns without a list meanwhile inherits
    // every inheritable handle.
    let inheritance = channel
        .inheritance()
        .map_err(|e| fail("making the channel's end inheritable", e))?;
    let mut handles = streams.handles();
    handles.push(inheritance.handle());
    let list = AttributeList::new(&handles).map_err(|e| fail("the handle list", e))?;

    // SAFETY: zeroed is a valid STARTUPINFOEXW (all integers and pointers).
    let mut startup: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    startup.StartupInfo.cb = size_of::<STARTUPINFOEXW>() as u32;
    startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    startup.StartupInfo.hStdInput = streams.input;
    startup.StartupInfo.hStdOutput = streams.output;
    startup.StartupInfo.hStdError = streams.error;
    startup.lpAttributeList = list.0.as_ptr() as LPPROC_THREAD_ATTRIBUTE_LIST;
    // SAFETY: zeroed is a valid PROCESS_INFORMATION.
    let mut info: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: every string is NUL-terminated (the environment block
    // double-NUL), the command line is writable as CreateProcessW wants,
    // the attribute list and the handles it names live until it returns;
    // the result is checked.
    let created = unsafe {
        CreateProcessW(
            application.as_ptr(),
            line.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            // Inherit handles, but only those in the list.
            1,
            CREATE_UNICODE_ENVIRONMENT | EXTENDED_STARTUPINFO_PRESENT,
            environment.as_ptr().cast(),
            directory
                .as_ref()
                .map_or(std::ptr::null(), |dir| dir.as_ptr()),
            &startup.StartupInfo,
            &mut info,
        )
    };
    let error = io::Error::last_os_error();
    if created != 0 {
        inheritance.spawned(info.dwProcessId);
    }
    drop(list);
    // Not inheritable any more, and this process's copy closed: the
    // child's exit is what the server sees end the connection.
    drop(inheritance);
    drop(streams);
    if created == 0 {
        return Err(fail("CreateProcessW", error));
    }
    // SAFETY: new handles this process owns; the thread's is not needed.
    let process = unsafe {
        CloseHandle(info.hThread);
        OwnedHandle::from_raw_handle(info.hProcess as RawHandle)
    };
    Ok(ChannelChild::new(process, info.dwProcessId))
}

/// The program's path: one with a directory (or a drive) is used as it
/// is, a bare name is looked up in the child's `PATH` if the command sets
/// one, else in this process's; `.exe` is added to a name without an
/// extension, as std does. Batch files are refused: `cmd.exe` parses
/// their arguments by other rules, which std handles and this does not.
fn resolve(program: &OsStr, envs: &[(OsString, Option<OsString>)]) -> io::Result<PathBuf> {
    let mut path = PathBuf::from(program);
    if path.as_os_str().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the program's name is empty",
        ));
    }
    if path.extension().is_none() {
        path.set_extension("exe");
    }
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    if matches!(extension.as_deref(), Some("bat" | "cmd")) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "batch files are not supported (cmd.exe quotes their arguments by its own \
             rules): spawn cmd.exe or a program instead",
        ));
    }
    let bare =
        path.components().count() == 1 && !program.encode_wide().any(|c| c == u16::from(b':'));
    if !bare {
        return Ok(path);
    }
    let child_path = envs
        .iter()
        .rev()
        .find(|(key, _)| key.eq_ignore_ascii_case("PATH"))
        .map(|(_, value)| value.clone());
    let search = match child_path {
        Some(value) => value,
        None => std::env::var_os("PATH"),
    };
    search
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&path))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is in no directory of PATH", path.display()),
            )
        })
}

/// The command line, by the rules of the Microsoft C runtime that std's
/// `Command` follows: the program always in quotes (a path cannot contain
/// one), an argument in quotes when it is empty or holds a space or a tab,
/// a quote inside escaped with a backslash, and the backslashes before a
/// quote (or before the closing quote) doubled.
pub(super) fn command_line<'a>(
    program: &OsStr,
    args: impl Iterator<Item = &'a OsStr>,
) -> io::Result<Vec<u16>> {
    let program: Vec<u16> = program.encode_wide().collect();
    if program.contains(&u16::from(b'"')) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the program's name contains a quote",
        ));
    }
    let mut line = vec![u16::from(b'"')];
    line.extend(program);
    line.push(u16::from(b'"'));
    for arg in args {
        line.push(u16::from(b' '));
        append_argument(&mut line, arg);
    }
    if line.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument contains a NUL character",
        ));
    }
    line.push(0);
    Ok(line)
}

fn append_argument(line: &mut Vec<u16>, arg: &OsStr) {
    let (backslash, quote) = (u16::from(b'\\'), u16::from(b'"'));
    let quoted = arg.is_empty()
        || arg
            .encode_wide()
            .any(|c| c == u16::from(b' ') || c == u16::from(b'\t'));
    if quoted {
        line.push(quote);
    }
    let mut backslashes = 0;
    for c in arg.encode_wide() {
        if c == backslash {
            backslashes += 1;
        } else {
            if c == quote {
                // 2n + 1 backslashes, then the quote.
                line.extend(std::iter::repeat_n(backslash, backslashes + 1));
            }
            backslashes = 0;
        }
        line.push(c);
    }
    if quoted {
        // 2n backslashes before the closing quote.
        line.extend(std::iter::repeat_n(backslash, backslashes));
        line.push(quote);
    }
}

/// The child's environment block: `parent` with the command's changes
/// (`None` removes), names compared without case as Windows does, sorted
/// without case as `CreateProcessW` expects, `NAME=value` in UTF-16 each
/// ending in NUL, and one more NUL at the end.
pub(super) fn environment_block(
    parent: impl Iterator<Item = (OsString, OsString)>,
    changes: &[(OsString, Option<OsString>)],
) -> io::Result<Vec<u16>> {
    let fold = |name: &OsStr| name.to_string_lossy().to_uppercase();
    let mut vars: std::collections::BTreeMap<String, (OsString, OsString)> = parent
        .map(|(name, value)| (fold(&name), (name, value)))
        .collect();
    for (name, value) in changes {
        match value {
            Some(value) => {
                vars.insert(fold(name), (name.clone(), value.clone()));
            }
            None => {
                vars.remove(&fold(name));
            }
        }
    }
    let mut block = Vec::new();
    for (name, value) in vars.values() {
        let name: Vec<u16> = name.encode_wide().collect();
        // A leading '=' is part of some names (`=C:`, the drive's directory).
        if name.is_empty() || name[1..].contains(&u16::from(b'=')) || name.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the variable name {:?} is empty or contains '=' or NUL",
                    String::from_utf16_lossy(&name)
                ),
            ));
        }
        let value: Vec<u16> = value.encode_wide().collect();
        if value.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the value of {} contains a NUL character",
                    String::from_utf16_lossy(&name)
                ),
            ));
        }
        block.extend(name);
        block.push(u16::from(b'='));
        block.extend(value);
        block.push(0);
    }
    if block.is_empty() {
        // An empty block is still two NULs.
        block.push(0);
    }
    block.push(0);
    Ok(block)
}

fn wide(text: &OsStr, what: &str) -> io::Result<Vec<u16>> {
    let mut wide: Vec<u16> = text.encode_wide().collect();
    if wide.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL character"),
        ));
    }
    wide.push(0);
    Ok(wide)
}

/// Inheritable copies of this process's standard handles, for the child;
/// null where this process has none (a GUI program), which the child then
/// lacks too. Closed on drop.
struct Streams {
    input: HANDLE,
    output: HANDLE,
    error: HANDLE,
}

impl Streams {
    fn duplicate() -> io::Result<Streams> {
        let mut streams = Streams {
            input: std::ptr::null_mut(),
            output: std::ptr::null_mut(),
            error: std::ptr::null_mut(),
        };
        streams.input = inheritable_copy(STD_INPUT_HANDLE, "standard input")?;
        streams.output = inheritable_copy(STD_OUTPUT_HANDLE, "standard output")?;
        streams.error = inheritable_copy(STD_ERROR_HANDLE, "standard error")?;
        Ok(streams)
    }

    fn handles(&self) -> Vec<HANDLE> {
        [self.input, self.output, self.error]
            .into_iter()
            .filter(|handle| !handle.is_null())
            .collect()
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        for handle in self.handles() {
            // SAFETY: copies this struct made and owns.
            unsafe { CloseHandle(handle) };
        }
    }
}

fn inheritable_copy(which: STD_HANDLE, name: &str) -> io::Result<HANDLE> {
    // SAFETY: no arguments to get wrong.
    let handle = unsafe { GetStdHandle(which) };
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return Ok(std::ptr::null_mut());
    }
    let mut copy = std::ptr::null_mut();
    // SAFETY: copies an open handle of this process into this process;
    // the result is checked.
    let copied = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            handle,
            GetCurrentProcess(),
            &mut copy,
            0,
            1,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if copied == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("copying this process's {name}: {e}"),
        ));
    }
    Ok(copy)
}

/// A `PROC_THREAD_ATTRIBUTE_HANDLE_LIST` naming `handles`, which must
/// outlive it. The buffer is `u64`s for the alignment the list needs.
struct AttributeList(Vec<u64>, Vec<HANDLE>);

impl AttributeList {
    fn new(handles: &[HANDLE]) -> io::Result<AttributeList> {
        let mut size = 0;
        // SAFETY: asks for the size only (this call "fails" with it).
        unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
        if size == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buffer = vec![0u64; size.div_ceil(8)];
        let list = buffer.as_mut_ptr() as LPPROC_THREAD_ATTRIBUTE_LIST;
        // SAFETY: a buffer of the size asked for; checked.
        if unsafe { InitializeProcThreadAttributeList(list, 1, 0, &mut size) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // The list points into this vector, which moves into the struct
        // with its heap buffer unmoved.
        let handles = handles.to_vec();
        let attribute = AttributeList(buffer, handles);
        // SAFETY: an initialised list with room for one attribute; the
        // handles stay where they are while the list lives.
        let updated = unsafe {
            UpdateProcThreadAttribute(
                attribute.0.as_ptr() as LPPROC_THREAD_ATTRIBUTE_LIST,
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                attribute.1.as_ptr().cast(),
                std::mem::size_of_val(attribute.1.as_slice()),
                std::ptr::null_mut(),
                std::ptr::null(),
            )
        };
        if updated == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(attribute)
    }
}

impl Drop for AttributeList {
    fn drop(&mut self) {
        // SAFETY: a list `new` initialised.
        unsafe {
            DeleteProcThreadAttributeList(self.0.as_mut_ptr() as LPPROC_THREAD_ATTRIBUTE_LIST)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> String {
        let wide = command_line(OsStr::new("C:\\a b\\p.exe"), args.iter().map(OsStr::new)).unwrap();
        String::from_utf16(&wide[..wide.len() - 1]).unwrap()
    }

    #[test]
    fn arguments_are_quoted_as_the_msvc_runtime_reads_them() {
        assert_eq!(line(&[]), r#""C:\a b\p.exe""#);
        assert_eq!(line(&["", "a", "b c"]), r#""C:\a b\p.exe" "" a "b c""#);
        assert_eq!(line(&[r#"say "hi""#]), r#""C:\a b\p.exe" "say \"hi\"""#);
        assert_eq!(line(&[r"a\\b", r"a\"]), r#""C:\a b\p.exe" a\\b a\"#);
        assert_eq!(line(&[r"a b\"]), r#""C:\a b\p.exe" "a b\\""#);
        assert_eq!(line(&[r#"a\"b"#]), r#""C:\a b\p.exe" a\\\"b"#);
        assert_eq!(line(&["tab\there"]), "\"C:\\a b\\p.exe\" \"tab\there\"");
        assert!(command_line(OsStr::new("p"), [OsStr::new("a\0b")].into_iter()).is_err());
        assert!(command_line(OsStr::new("p\"q"), std::iter::empty()).is_err());
    }

    #[test]
    fn the_environment_is_the_parents_with_the_changes_sorted_without_case() {
        let parent = [("Path", "p"), ("b", "1"), ("A", "2"), ("gone", "x")]
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let changes = [
            (OsString::from("PATH"), Some(OsString::from("q"))),
            (OsString::from("GONE"), None),
            (OsString::from("c"), Some(OsString::new())),
        ];
        let block = environment_block(parent.into_iter(), &changes).unwrap();
        let text = String::from_utf16(&block).unwrap();
        assert_eq!(text, "A=2\0b=1\0c=\0PATH=q\0\0");
        let empty = environment_block(std::iter::empty(), &[]).unwrap();
        assert_eq!(empty, [0, 0]);
        let bad = [(OsString::from("a=b"), Some(OsString::new()))];
        assert!(environment_block(std::iter::empty(), &bad).is_err());
    }
}
