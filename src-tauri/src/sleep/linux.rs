//! Linux's sleep signal: systemd-logind's `PrepareForSleep(true)` on the system D-Bus just
//! before a suspend or hibernate, `PrepareForSleep(false)` after the wake. To be heard in
//! time, the watcher holds a *delay* inhibitor lock (`Inhibit("sleep", …, "delay")`): logind
//! waits for it to be released (at most `InhibitDelayMaxSec`, 5 s by default) before it
//! sleeps. The watcher releases it once `before_sleep` has returned and takes a new one on
//! waking. Nothing runs between signals: the thread blocks on the bus.

use std::thread::JoinHandle;

use zbus::blocking::{Connection, Proxy};
use zbus::zvariant::OwnedFd;

use super::SleepHooks;

const LOGIND: &str = "org.freedesktop.login1";
const LOGIND_PATH: &str = "/org/freedesktop/login1";
const LOGIND_MANAGER: &str = "org.freedesktop.login1.Manager";

/// Listens on the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the standard socket).
pub fn watch_system_bus(hooks: SleepHooks) -> Result<JoinHandle<()>, String> {
    let bus = Connection::system().map_err(|e| format!("no system D-Bus: {e}"))?;
    watch(bus, hooks).map_err(|e| format!("cannot listen to logind: {e}"))
}

/// Listens on `bus`: subscribed to `PrepareForSleep` and holding a delay lock when this
/// returns; the returned thread answers each signal until the bus closes.
pub fn watch(bus: Connection, hooks: SleepHooks) -> zbus::Result<JoinHandle<()>> {
    let logind = Proxy::new(&bus, LOGIND, LOGIND_PATH, LOGIND_MANAGER)?;
    let signals = logind.receive_signal("PrepareForSleep")?;
    let mut lock = take_delay_lock(&logind);
    std::thread::Builder::new()
        .name("dormouse-sleep".into())
        .spawn(move || {
            for message in signals {
                let sleeping: bool = match message.body().deserialize() {
                    Ok(flag) => flag,
                    Err(error) => {
                        tracing::warn!(%error, "unreadable PrepareForSleep signal");
                        continue;
                    }
                };
                if sleeping {
                    tracing::info!("the system is going to sleep");
                    (hooks.before_sleep)();
                    // Releasing the lock lets logind go on with the sleep.
                    drop(lock.take());
                } else {
                    tracing::info!("the system woke up");
                    (hooks.after_wake)();
                    if lock.is_none() {
                        lock = take_delay_lock(&logind);
                    }
                }
            }
            tracing::debug!("the system bus closed: no more sleep signals");
        })
        .map_err(|e| zbus::Error::Failure(format!("cannot start the sleep watcher: {e}")))
}

/// A delay lock on sleep, or `None` (logged) where logind refuses one: then the unload races
/// the suspend, which is what a missing lock costs.
fn take_delay_lock(logind: &Proxy<'_>) -> Option<OwnedFd> {
    let args = (
        "sleep",
        "Dormouse",
        "Unloading models before the system sleeps",
        "delay",
    );
    match logind.call::<_, _, OwnedFd>("Inhibit", &args) {
        Ok(fd) => Some(fd),
        Err(error) => {
            tracing::warn!(%error, "logind gave no delay lock: models may still be unloading as the system sleeps");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a real, private `dbus-daemon` with a stand-in logind on it that hands out a
    //! pipe as its inhibitor (like logind's FIFO: the lock is released when every copy of
    //! the descriptor is closed) and emits `PrepareForSleep` as logind does.

    use std::io::{BufRead, BufReader, Read};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use zbus::blocking::connection::Builder;

    use super::*;

    /// A private bus; killed on drop.
    pub(crate) struct PrivateBus {
        daemon: Child,
        pub address: String,
    }

    impl PrivateBus {
        pub(crate) fn start() -> Self {
            let mut daemon = Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("dbus-daemon runs (Debian package dbus-daemon, installed by scripts/install-deps.sh)");
            let mut line = String::new();
            BufReader::new(daemon.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("the daemon prints its address");
            Self {
                daemon,
                address: line.trim().to_string(),
            }
        }

        pub(crate) fn connect(&self) -> Builder<'static> {
            Builder::address(self.address.as_str()).expect("valid address")
        }
    }

    impl Drop for PrivateBus {
        fn drop(&mut self) {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }

    /// The stand-in logind: `Inhibit` hands out the write end of a pipe and reports the
    /// read end, whose EOF says the lock was released.
    struct FakeLogind {
        locks: Mutex<Sender<std::io::PipeReader>>,
    }

    #[zbus::interface(name = "org.freedesktop.login1.Manager")]
    impl FakeLogind {
        fn inhibit(
            &self,
            what: &str,
            who: &str,
            _why: &str,
            mode: &str,
        ) -> zbus::fdo::Result<OwnedFd> {
            assert_eq!((what, who, mode), ("sleep", "Dormouse", "delay"));
            let (reader, writer) =
                std::io::pipe().map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
            self.locks
                .lock()
                .expect("lock")
                .send(reader)
                .expect("test listens");
            Ok(OwnedFd::from(std::os::fd::OwnedFd::from(writer)))
        }
    }

    fn start_logind(bus: &PrivateBus) -> (Connection, Receiver<std::io::PipeReader>) {
        let (tx, rx) = channel();
        let logind = bus
            .connect()
            .name(LOGIND)
            .expect("name")
            .serve_at(
                LOGIND_PATH,
                FakeLogind {
                    locks: Mutex::new(tx),
                },
            )
            .expect("served")
            .build()
            .expect("logind on the bus");
        (logind, rx)
    }

    fn prepare_for_sleep(logind: &Connection, sleeping: bool) {
        logind
            .emit_signal(
                None::<&str>,
                LOGIND_PATH,
                LOGIND_MANAGER,
                "PrepareForSleep",
                &(sleeping,),
            )
            .expect("signal sent");
    }

    /// Waits for the lock's EOF on a thread and logs "lock released" when it comes.
    fn log_release(mut lock: std::io::PipeReader, log: Arc<Mutex<Vec<String>>>) {
        std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            // 0 bytes read: every copy of the write end is closed.
            while lock.read(&mut byte).map(|n| n > 0).unwrap_or(false) {}
            log.lock().expect("log").push("lock released".into());
        });
    }

    fn wait_for(log: &Arc<Mutex<Vec<String>>>, want: &[&str]) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = log.lock().expect("log").clone();
            if seen == want {
                return;
            }
            assert!(
                std::time::Instant::now() < until,
                "saw {seen:?}, wanted {want:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn prepare_for_sleep_runs_the_hook_then_releases_the_lock_and_waking_takes_a_new_one() {
        let bus = PrivateBus::start();
        let (logind, locks) = start_logind(&bus);
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let hooks = {
            let (before, after) = (log.clone(), log.clone());
            SleepHooks {
                before_sleep: Box::new(move || {
                    // The lock must still be held while the hook runs.
                    std::thread::sleep(Duration::from_millis(50));
                    before.lock().expect("log").push("before sleep".into());
                }),
                after_wake: Box::new(move || after.lock().expect("log").push("after wake".into())),
            }
        };
        let app = bus.connect().build().expect("app on the bus");
        let _watcher = watch(app, hooks).expect("watching");
        let first = locks
            .recv_timeout(Duration::from_secs(5))
            .expect("a lock at start");
        log_release(first, log.clone());

        prepare_for_sleep(&logind, true);
        wait_for(&log, &["before sleep", "lock released"]);

        prepare_for_sleep(&logind, false);
        wait_for(&log, &["before sleep", "lock released", "after wake"]);
        let second = locks
            .recv_timeout(Duration::from_secs(5))
            .expect("a new lock after waking");
        log_release(second, log.clone());

        prepare_for_sleep(&logind, true);
        wait_for(
            &log,
            &[
                "before sleep",
                "lock released",
                "after wake",
                "before sleep",
                "lock released",
            ],
        );
    }

    #[test]
    fn without_logind_on_the_bus_watching_starts_without_a_lock() {
        let bus = PrivateBus::start();
        let app = bus.connect().build().expect("app on the bus");
        let hooks = SleepHooks {
            before_sleep: Box::new(|| {}),
            after_wake: Box::new(|| {}),
        };
        // No logind: the subscription works, the lock cannot be had; watching still starts
        // (sleep then races the unload), and says so in the log.
        assert!(watch(app, hooks).is_ok());
    }
}
