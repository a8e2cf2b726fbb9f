//! Free disk space: [`SpaceProbe`] answers how many bytes a folder's file system has free
//! (`statvfs` for real, [`FixedSpace`] to simulate a full disk in tests).

use std::path::Path;

/// Says how many bytes are free where a file would be written.
pub trait SpaceProbe: Send + Sync {
    /// Bytes available to this process in `dir`'s file system.
    fn available(&self, dir: &Path) -> std::io::Result<u64>;
}

/// The real file system, through `statvfs(3)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatvfsSpace;

impl SpaceProbe for StatvfsSpace {
    fn available(&self, dir: &Path) -> std::io::Result<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `path` is a valid NUL-terminated string and `stat` a zeroed out-parameter
        // that statvfs fills in.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
    }
}

/// A file system with a fixed number of free bytes (a full disk, in tests).
#[derive(Clone, Copy, Debug)]
pub struct FixedSpace(pub u64);

impl SpaceProbe for FixedSpace {
    fn available(&self, _dir: &Path) -> std::io::Result<u64> {
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_reports_some_free_space_and_errors_on_a_missing_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(StatvfsSpace.available(dir.path()).expect("statvfs") > 0);
        assert!(StatvfsSpace
            .available(&dir.path().join("no/such/folder"))
            .is_err());
    }
}
