//! Archive unpacking (gzip-compressed tar, as the catalog's model folders come): paths that
//! escape, links, devices and broken streams must be refused, leaving nothing behind.
#![no_main]
use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let archive = dir.path().join("model.tar.gz");
    let written = std::fs::File::create(&archive).and_then(|mut f| f.write_all(data));
    if written.is_err() {
        return;
    }
    let dest = dir.path().join("out").join("model");
    if std::fs::create_dir_all(dir.path().join("out")).is_err() {
        return;
    }
    if downloads::unpack_tar_gz(&archive, &dest, &|| false).is_err() {
        // A refused archive leaves nothing in the destination's folder.
        let left = std::fs::read_dir(dir.path().join("out")).map_or(0, |d| d.count());
        assert_eq!(left, 0, "a refused archive left files behind");
    }
});
