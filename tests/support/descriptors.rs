//! This process's open descriptors, as `/proc/self/fd` lists them (Linux;
//! nothing elsewhere).

/// The descriptors from 3 up, with what they point at, in order.
pub fn own_descriptors() -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<(i32, String)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd: i32 = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .filter(|(fd, _)| *fd > 2)
        .collect();
    fds.sort();
    fds
}
