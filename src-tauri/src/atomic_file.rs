//! Writing a file atomically, the one way the app does it (settings, user models and their
//! records, the training set): the content goes to a temp file beside the target
//! (`.<name>.<pid>-<n>.tmp`, created with `create_new`), is synced, renamed over the target,
//! and the folder is synced (Unix). A crash leaves the old file or the new one, never half of
//! one; a failed write leaves the old file and removes its temp file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `path` with what `fill` puts in the (empty) temp file.
pub fn write(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    write_checked(path, fill, |_| Ok(()))
}

/// [`write`], with `check` run on the complete, synced temp file (its path) before it is
/// renamed into place: a file `check` refuses never replaces the old one.
pub fn write_checked(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
    check: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (mut temp, temp_path) = create_temp(dir, path)?;
    let guard = RemoveOnDrop(Some(temp_path));
    fill(&mut temp)?;
    temp.sync_all()?;
    drop(temp);
    let temp_path = guard.path();
    check(temp_path)?;
    fs::rename(temp_path, path)?;
    guard.disarm();
    sync_dir(dir);
    Ok(())
}

/// Writes `path` with `bytes`.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write(path, |file| file.write_all(bytes))
}

/// Copies `source` to `target`; returns the bytes copied. Fails if `source` changed size
/// while it was copied.
pub fn copy(source: &Path, target: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    write(target, |to| {
        let mut from = File::open(source)?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = from.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            to.write_all(&buffer[..n])?;
            total += n as u64;
        }
        if total != fs::metadata(source)?.len() {
            return Err(io::Error::other("the file changed while it was copied"));
        }
        Ok(())
    })?;
    Ok(total)
}

fn create_temp(dir: &Path, target: &Path) -> io::Result<(File, PathBuf)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((file, temp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Makes the rename durable (Unix); Windows has no folder handle to sync, and the rename
/// itself is what `MoveFileEx` makes atomic there.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Removes the temp file unless the write got as far as the rename.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_write_replaces_the_file_and_a_failed_one_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp");
        let path = dir.path().join("settings.json");
        write_bytes(&path, b"old").expect("write");
        write_bytes(&path, b"new").expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"new");
        let failed = write(&path, |file| {
            file.write_all(b"half of someth")?;
            Err(io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).expect("read"), b"new", "old content kept");
        assert_eq!(names(dir.path()), ["settings.json"], "no temp file left");
    }

    #[test]
    fn concurrent_writers_each_leave_a_whole_file() {
        let dir = tempfile::tempdir().expect("temp");
        let path = std::sync::Arc::new(dir.path().join("record.json"));
        let handles: Vec<_> = (0..8u8)
            .map(|n| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        write_bytes(&path, &vec![n; 64 * 1024]).expect("write");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        let content = fs::read(&*path).expect("read");
        assert_eq!(content.len(), 64 * 1024);
        assert!(
            content.iter().all(|&b| b == content[0]),
            "interleaved writes"
        );
        assert_eq!(names(dir.path()), ["record.json"]);
    }

    #[test]
    fn a_copy_is_whole_and_sized() {
        let dir = tempfile::tempdir().expect("temp");
        let source = dir.path().join("weights.bin");
        fs::write(&source, vec![7u8; 3 << 20]).expect("write");
        let target = dir.path().join("copy.bin");
        assert_eq!(copy(&source, &target).expect("copy"), 3 << 20);
        assert_eq!(
            fs::read(&target).expect("read"),
            fs::read(&source).expect("read")
        );
        assert!(copy(&dir.path().join("missing"), &target).is_err());
        assert_eq!(fs::read(&target).expect("read").len(), 3 << 20, "kept");
    }
}
