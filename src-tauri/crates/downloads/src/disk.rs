//! Free disk space: [`SpaceProbe`] answers how many bytes a folder's file system has free
//! ([`SystemSpace`] for real, [`FixedSpace`] to simulate a full disk in tests).

use std::path::Path;

/// Says how many bytes are free where a file would be written.
pub trait SpaceProbe: Send + Sync {
    /// Bytes available to this process in `dir`'s file system.
    fn available(&self, dir: &Path) -> std::io::Result<u64>;
}

/// The real file system, through `fs4` (`statvfs` on Unix, `GetDiskFreeSpaceExW` on
/// Windows): the bytes this user may write, which excludes the blocks reserved for root.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemSpace;

impl SpaceProbe for SystemSpace {
    fn available(&self, dir: &Path) -> std::io::Result<u64> {
        fs4::available_space(dir)
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
    fn the_system_reports_some_free_space_and_errors_on_a_missing_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(SystemSpace.available(dir.path()).expect("free space") > 0);
        assert!(SystemSpace
            .available(&dir.path().join("no/such/folder"))
            .is_err());
    }
}
