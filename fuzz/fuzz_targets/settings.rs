//! The settings file as the app reads it at start-up (`settings.json`, which a user may edit
//! or a crash may have cut), and the environment overrides read beside it.
#![no_main]
use dormouse_lib::managers::settings::{parse, EnvOverrides};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&0, env)) = data.split_first() {
        // Environment mode: the three variables' values, separated by newlines.
        let text = String::from_utf8_lossy(env);
        let mut values = text.split('\n');
        let inactivity = values.next().map(str::to_owned);
        let interval = values.next().map(str::to_owned);
        let load = values.next().map(str::to_owned);
        let overrides = EnvOverrides::read(|name| match name {
            "MODEL_INACTIVITY_TIMEOUT" => inactivity.clone(),
            "MODEL_CHECK_INTERVAL" => interval.clone(),
            "MODEL_LOAD_TIMEOUT" => load.clone(),
            _ => None,
        });
        let _ = overrides.apply(&Default::default());
        return;
    }
    if let Ok(settings) = parse(data) {
        // What was accepted must write back and read back the same.
        let written = serde_json::to_vec_pretty(&settings).expect("settings serialise");
        let again = parse(&written).expect("written settings read back");
        assert_eq!(settings, again);
    }
});
