//! The GGML (Whisper) and safetensors (SAM) header inspections a user's file goes through
//! before anything loads it.
#![no_main]
use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    let _ = engines::speech::inspect_whisper(file.path());
    let _ = engines::segmentation::weights::inspect(file.path());
});
