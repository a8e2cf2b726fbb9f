//! Unloading through the manager gives memory back to the OS, and the figure it reports is
//! measured. Alone in its own test binary so no other test's allocations blur the RSS.

use std::sync::Arc;

use model_manager::{
    LoadContext, LoadError, LoadedModel, ModelKey, ModelLoader, ModelManager, ModelSpec,
};

/// A model holding touched (resident) memory in 64 KiB tensors.
struct Weights(Vec<Vec<u8>>);
impl LoadedModel for Weights {
    fn resident_bytes(&self) -> u64 {
        self.0.iter().map(|t| t.len() as u64).sum()
    }
}

/// Loads `size` bytes of tensors, then makes a small allocation that outlives the model (as
/// a tokenizer or cache would), so the freed tensors sit below live memory in the heap and
/// glibc keeps them unless trimmed.
struct WeightsLoader {
    size: usize,
    long_lived: parking_lot::Mutex<Vec<Vec<u8>>>,
}
impl ModelLoader for WeightsLoader {
    fn estimate_bytes(&self, _: &ModelSpec) -> Option<u64> {
        Some(self.size as u64)
    }
    fn load(&self, _: &ModelSpec, _: &LoadContext) -> Result<Box<dyn LoadedModel>, LoadError> {
        // Many tensors below glibc's mmap threshold, like a real model's: freed, they stay in
        // the allocator's heap unless it is trimmed.
        const TENSOR: usize = 64 << 10;
        let weights = (0..self.size / TENSOR)
            .map(|i| vec![i as u8 | 1; TENSOR])
            .collect();
        self.long_lived.lock().push(vec![1; 256]);
        Ok(Box::new(Weights(weights)))
    }
}

#[test]
fn unload_gives_the_memory_back_and_reports_it() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    const SIZE: usize = 96 << 20;
    let key = ModelKey::new("stt").expect("valid");
    let manager = ModelManager::builder()
        .register(
            key.clone(),
            Arc::new(WeightsLoader {
                size: SIZE,
                long_lived: parking_lot::Mutex::new(Vec::new()),
            }),
            ModelSpec::new("big"),
        )
        .idle_checker(false)
        .build()
        .expect("builds");
    let baseline = model_manager::memory::process_rss_bytes().expect("rss");
    drop(manager.acquire(&key).expect("loads"));
    let loaded = model_manager::memory::process_rss_bytes().expect("rss");
    assert!(
        loaded >= baseline + (SIZE as u64) * 3 / 4,
        "model resident: {baseline} -> {loaded}"
    );
    let status = manager.status();
    assert_eq!(status.models[0].resident_bytes, Some(SIZE as u64));

    let report = manager.unload_all();
    let freed = report.unloaded[0].bytes_freed.expect("measured on Linux");
    assert!(
        freed >= (SIZE as u64) * 3 / 4,
        "freed only {freed} of {SIZE}"
    );
    let after = model_manager::memory::process_rss_bytes().expect("rss");
    assert!(
        after < baseline + (16 << 20),
        "RSS back near baseline: {baseline} -> {after}"
    );
    let status = manager.status();
    let last = status.models[0].last_unload.as_ref().expect("recorded");
    assert_eq!(last.bytes_freed, Some(freed));
}
