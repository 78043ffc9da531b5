//! Servers left behind by test processes that died without dropping them
//! (killed by a timeout, say), shared by the redis-server and Prometheus
//! helpers.

use std::path::Path;
use std::process::Command;

/// Stops the servers of dead test processes: each lives in a temporary
/// directory `<prefix><test pid>-<n>` with its pid in `pid_file`, and is
/// killed only if it still runs in that very directory; the directory is
/// removed. Linux only (it looks in `/proc`); elsewhere a killed run may
/// leave a server behind.
pub fn remove_stale_servers(prefix: &str, pid_file: &str) {
    let proc_root = Path::new("/proc");
    if !proc_root.is_dir() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if owner == std::process::id() || proc_root.join(owner.to_string()).exists() {
            continue;
        }
        let dir = entry.path();
        let server = std::fs::read_to_string(dir.join(pid_file))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        if let Some(pid) = server {
            // Only a server that runs in that very directory.
            let cwd = std::fs::read_link(proc_root.join(pid.to_string()).join("cwd")).ok();
            if cwd.as_deref() == Some(dir.as_path()) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
