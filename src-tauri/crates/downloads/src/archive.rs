//! Unpacking a verified `.tar.gz` into its destination folder: entries go into a staging
//! folder beside the destination, which is renamed into place only when every entry was
//! written. Absolute paths, `..`, links and devices are refused. When the archive holds a
//! single top-level folder (as model archives usually do), its contents become the
//! destination's contents.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::DownloadError;

/// Staging folder for `dest`: `.<name>.unpacking` beside it.
pub(crate) fn staging_path(dest: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(dest.file_name().unwrap_or_default());
    name.push(".unpacking");
    dest.with_file_name(name)
}

/// Unpacks `archive` (gzip-compressed tar) into `dest`, which must not exist yet.
/// `cancelled` is polled between entries; on any failure nothing is left behind.
pub fn unpack_tar_gz(
    archive: &Path,
    dest: &Path,
    cancelled: &dyn Fn() -> bool,
) -> Result<(), DownloadError> {
    let staging = staging_path(dest);
    let _ = fs::remove_dir_all(&staging);
    let result = unpack_into(archive, &staging, cancelled).and_then(|()| {
        let root = single_top_folder(&staging)?.unwrap_or_else(|| staging.clone());
        fs::rename(&root, dest).map_err(|e| DownloadError::io(dest, &e))
    });
    let _ = fs::remove_dir_all(&staging);
    result
}

fn unpack_into(
    archive: &Path,
    staging: &Path,
    cancelled: &dyn Fn() -> bool,
) -> Result<(), DownloadError> {
    let file = fs::File::open(archive).map_err(|e| DownloadError::io(archive, &e))?;
    fs::create_dir_all(staging).map_err(|e| DownloadError::io(staging, &e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let entries = tar
        .entries()
        .map_err(|e| DownloadError::Archive(e.to_string()))?;
    let mut files = 0usize;
    for entry in entries {
        if cancelled() {
            return Err(DownloadError::Cancelled);
        }
        let mut entry = entry.map_err(|e| DownloadError::Archive(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| DownloadError::Archive(e.to_string()))?
            .into_owned();
        let relative = safe_relative(&path).ok_or_else(|| {
            DownloadError::Archive(format!("it holds an unsafe path: {}", path.display()))
        })?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let out = staging.join(&relative);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            fs::create_dir_all(&out).map_err(|e| DownloadError::io(&out, &e))?;
        } else if kind.is_file() {
            if let Some(parent) = out.parent() {
                fs::create_dir_all(parent).map_err(|e| DownloadError::io(parent, &e))?;
            }
            let mut target = fs::File::create(&out).map_err(|e| DownloadError::io(&out, &e))?;
            std::io::copy(&mut entry, &mut target)
                .map_err(|e| DownloadError::Archive(format!("{}: {e}", relative.display())))?;
            files += 1;
        } else if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        } else {
            return Err(DownloadError::Archive(format!(
                "it holds a link or special file: {}",
                path.display()
            )));
        }
    }
    if files == 0 {
        return Err(DownloadError::Archive("it holds no files".into()));
    }
    Ok(())
}

/// `path` without `.` components, or `None` if it is absolute or climbs out with `..`.
fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The only entry of `dir` when that entry is a folder.
fn single_top_folder(dir: &Path) -> Result<Option<PathBuf>, DownloadError> {
    let mut entries = fs::read_dir(dir)
        .map_err(|e| DownloadError::io(dir, &e))?
        .filter_map(Result::ok);
    match (entries.next(), entries.next()) {
        (Some(only), None) if only.path().is_dir() => Ok(Some(only.path())),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, *data)
                .expect("append");
        }
        builder.into_inner().expect("tar").finish().expect("gzip")
    }

    #[test]
    fn a_single_top_folder_becomes_the_destination() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("m.tar.gz");
        fs::write(
            &archive,
            tar_gz(&[("model/a.onnx", b"aa"), ("model/vocab.txt", b"v")]),
        )
        .expect("write");
        let dest = dir.path().join("parakeet");
        unpack_tar_gz(&archive, &dest, &|| false).expect("unpack");
        assert_eq!(fs::read(dest.join("a.onnx")).expect("a"), b"aa");
        assert_eq!(fs::read(dest.join("vocab.txt")).expect("v"), b"v");
        assert!(!staging_path(&dest).exists());
    }

    #[test]
    fn unsafe_paths_and_empty_or_corrupt_archives_leave_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("out");
        let archive = dir.path().join("bad.tar.gz");
        // tar's builder refuses `..` itself, so write the name into the header by hand.
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().expect("gnu").name[..9].copy_from_slice(b"../evil.t");
        header.set_size(1);
        header.set_cksum();
        builder.append(&header, &b"x"[..]).expect("append");
        fs::write(
            &archive,
            builder.into_inner().expect("tar").finish().expect("gz"),
        )
        .expect("write");
        let error = unpack_tar_gz(&archive, &dest, &|| false).expect_err("refused");
        assert!(error.to_string().contains("unsafe path"), "{error}");
        assert!(!dest.exists() && !staging_path(&dest).exists());
        assert!(!dir.path().join("evil.t").exists());

        fs::write(&archive, b"not gzip at all").expect("write");
        assert!(matches!(
            unpack_tar_gz(&archive, &dest, &|| false),
            Err(DownloadError::Archive(_))
        ));
        fs::write(&archive, tar_gz(&[])).expect("write");
        assert!(unpack_tar_gz(&archive, &dest, &|| false)
            .expect_err("empty")
            .to_string()
            .contains("no files"));
        assert!(!dest.exists() && !staging_path(&dest).exists());
    }
}
