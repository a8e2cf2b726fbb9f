//! Audio decoding, every format symphonia probes (WAV, FLAC, MP3, OGG/Vorbis), and raw PCM
//! with a rate and channel count taken from the input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = engines::audio::decode_bytes(data.to_vec(), "fuzz");
    if data.len() >= 5 {
        let rate = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let channels = usize::from(data[4] % 40);
        let _ = engines::audio::from_pcm_f32(&data[5..], rate, channels);
    }
});
