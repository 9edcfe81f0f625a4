//! Windows-only: the named pipe's access control.
//!
//! Wine stores a pipe's security descriptor but does not enforce it, so this
//! reads the descriptor back instead of trying to connect as another user
//! (which these machines cannot do either).
#![cfg(windows)]

use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::AsRawHandle;
use std::time::Duration;

use switchboard::{Address, Connector, Router, Server};
use windows_sys::Win32::Foundation::{GENERIC_READ, GENERIC_WRITE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
    SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR};
use windows_sys::Win32::Storage::FileSystem::READ_CONTROL;

fn dacl_of_pipe(name: &str) -> String {
    let path = format!(r"\\.\pipe\{name}");
    let mut file = None;
    for _ in 0..200 {
        match std::fs::OpenOptions::new()
            .access_mode(GENERIC_READ | GENERIC_WRITE | READ_CONTROL)
            .open(&path)
        {
            Ok(f) => {
                file = Some(f);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let file = file.expect("the pipe can be opened");
    // SAFETY: the handle is valid for the life of `file`; the descriptor and
    // the string are freed with LocalFree as the API requires.
    unsafe {
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        let status = GetSecurityInfo(
            file.as_raw_handle(),
            SE_KERNEL_OBJECT,
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut descriptor,
        );
        assert_eq!(status, 0, "GetSecurityInfo failed");
        let mut text: *mut u16 = std::ptr::null_mut();
        let ok = ConvertSecurityDescriptorToStringSecurityDescriptorW(
            descriptor,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            std::ptr::null_mut(),
        );
        assert_ne!(
            ok, 0,
            "ConvertSecurityDescriptorToStringSecurityDescriptorW failed"
        );
        let len = (0..).take_while(|i| *text.add(*i) != 0).count();
        let sddl = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        LocalFree(descriptor.cast());
        sddl
    }
}

#[tokio::test]
async fn the_pipe_admits_the_current_user_only() {
    let server = Server::bind(&Connector::local(), Router::new())
        .await
        .unwrap();
    let Address::Pipe(name) = server.connector().address().clone() else {
        panic!("expected a pipe")
    };
    let sddl = tokio::task::spawn_blocking(move || dacl_of_pipe(&name))
        .await
        .unwrap();
    assert!(
        sddl.starts_with("D:P"),
        "protected, nothing inherited: {sddl}"
    );
    let aces: Vec<&str> = sddl.split('(').skip(1).collect();
    assert_eq!(aces.len(), 1, "exactly one entry: {sddl}");
    let trustee = aces[0].trim_end_matches(')').rsplit(';').next().unwrap();
    assert!(aces[0].starts_with("A;"), "an allow entry: {sddl}");
    assert!(
        trustee.starts_with("S-1-5-21-"),
        "a user account, not a group such as Everyone: {sddl}"
    );
}
