//! Claiming a fresh id in a folder when several requests may pick one at once: the claim is
//! a marker file created with `create_new` (atomic on every system), so two claims of the
//! same id cannot both succeed. The marker is removed when the claim is dropped, by which
//! time the id's own files exist (or the attempt was given up).

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::path::PathBuf;

/// A claimed id; its marker file goes away on drop.
#[derive(Debug)]
pub struct ClaimedId {
    id: String,
    marker: PathBuf,
}

impl ClaimedId {
    /// The id claimed.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The marker file's name for `id` (to skip it when scanning the folder).
    pub fn marker_name(id: &str) -> String {
        format!("{id}.claim")
    }
}

impl Drop for ClaimedId {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.marker);
    }
}

/// Claims the first id `next` proposes that is free (`taken` says whether its files already
/// exist) and that no other request holds. `next` is asked again after every collision, so
/// it must propose something new each time (it may read the folder, where the markers of
/// other claims are visible). Gives up with an error after 10 000 proposals.
pub fn claim(
    dir: &std::path::Path,
    mut next: impl FnMut(u32) -> String,
    taken: impl Fn(&str) -> bool,
) -> std::io::Result<ClaimedId> {
    for attempt in 0..10_000 {
        let id = next(attempt);
        if taken(&id) {
            continue;
        }
        let marker = dir.join(ClaimedId::marker_name(&id));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
        {
            Ok(_) => {
                // Taken between the check and the claim: a claim that just finished.
                if taken(&id) {
                    let _ = fs::remove_file(&marker);
                    continue;
                }
                return Ok(ClaimedId { id, marker });
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "no free id found in {}",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::{Arc, Barrier};

    #[test]
    fn concurrent_claims_never_share_an_id_and_markers_go_away() {
        let dir = tempfile::tempdir().expect("temp");
        let path = Arc::new(dir.path().to_path_buf());
        let barrier = Arc::new(Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let claim = claim(
                        &path,
                        |n| format!("m-{n}"),
                        |id| path.join(format!("{id}.json")).exists(),
                    )
                    .expect("claimed");
                    // The id's file is written while the claim is held.
                    fs::write(path.join(format!("{}.json", claim.id())), b"{}").expect("write");
                    claim.id().to_owned()
                })
            })
            .collect();
        let ids: BTreeSet<String> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(ids.len(), 16, "{ids:?}");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".claim"))
            .collect();
        assert!(leftovers.is_empty(), "markers left: {leftovers:?}");
    }
}
