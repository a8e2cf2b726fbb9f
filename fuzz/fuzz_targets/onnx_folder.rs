//! The ONNX speech folder inspection: the input chooses which of the family's file names
//! exist (first byte, as a bit set) and what the text files hold.
#![no_main]
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 8] = [
    "encoder-model.onnx",
    "decoder_joint-model.int8.onnx",
    "nemo128.onnx",
    "vocab.txt",
    "encoder_model.onnx",
    "decoder_model_merged.onnx",
    "tokenizer.json",
    "tokens.txt",
];

fuzz_target!(|data: &[u8]| {
    let Some((&present, body)) = data.split_first() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    for (bit, name) in NAMES.iter().enumerate() {
        if present & (1 << bit) != 0 && std::fs::write(dir.path().join(name), body).is_err() {
            return;
        }
    }
    if present == 0 && std::fs::write(dir.path().join("model.onnx"), body).is_err() {
        return;
    }
    let _ = engines::speech::onnx::inspect_folder(dir.path());
});
