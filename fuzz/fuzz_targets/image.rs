//! Image and mask decoding (PNG, JPEG), as the Segment and Train pages send them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = engines::segmentation::decode_image(data, "fuzz.png");
});
