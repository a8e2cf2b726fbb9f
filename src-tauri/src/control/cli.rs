//! The command line for scripts and game launchers: `dormouse status [--json]` and
//! `dormouse unload [transcription|segmentation|vad|all] [--json]`, answered by the running
//! app over the control socket. The exit status says what happened: 0 the app answered,
//! 1 it answered with an error (or its answer was unreadable), 2 the command line was wrong,
//! 3 Dormouse is not running.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use interprocess::local_socket::prelude::*;
use interprocess::local_socket::Stream;

use super::{socket_name, Answer, Request, MAX_LINE};
use crate::catalog::Slot;
use crate::views::{ModelStateView, StatusView, UnloadSummary};

/// The app answered.
pub const EXIT_OK: i32 = 0;
/// The app answered with an error, or the answer could not be read.
pub const EXIT_FAILED: i32 = 1;
/// The command line was wrong.
pub const EXIT_USAGE: i32 = 2;
/// Dormouse is not running (nothing answers on the socket).
pub const EXIT_NOT_RUNNING: i32 = 3;

const USAGE: &str = "\
Usage:
  dormouse                         start the app
  dormouse status [--json]         what is loaded, its memory and when it unloads
  dormouse unload [SLOT] [--json]  unload models now (SLOT: transcription, segmentation,
                                   vad or all; all when left out)

Exit status: 0 the app answered, 1 it reported an error, 2 usage error, 3 Dormouse is
not running. Example, as a Steam launch option: dormouse unload all; %command%";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print the usage.
    Help,
    /// Send `request`; print JSON when `json`.
    Ask {
        /// What to ask.
        request: Request,
        /// Print the answer as JSON.
        json: bool,
    },
}

/// Parses the arguments after the program name; `None` when they are not a command (start
/// the app: no arguments, or whatever a desktop launcher passes).
pub fn parse(args: &[String]) -> Option<Result<Command, String>> {
    let first = args.first()?;
    let rest = &args[1..];
    let json = rest.iter().any(|a| a == "--json");
    let words: Vec<&String> = rest.iter().filter(|a| *a != "--json").collect();
    Some(match first.as_str() {
        "help" | "--help" | "-h" => Ok(Command::Help),
        "status" => match words.as_slice() {
            [] => Ok(Command::Ask {
                request: Request::Status,
                json,
            }),
            other => Err(format!(
                "status takes no argument but --json (got {other:?})"
            )),
        },
        "unload" => {
            let slot = match words.as_slice() {
                [] => Ok(None),
                [one] if one.as_str() == "all" => Ok(None),
                [one] => serde_json::from_value::<Slot>(serde_json::Value::String(one.to_string()))
                    .map(Some)
                    .map_err(|_| {
                        format!("unknown model slot {one:?}: use transcription, segmentation, vad or all")
                    }),
                more => Err(format!("unload takes one slot at most (got {more:?})")),
            };
            slot.map(|slot| Command::Ask {
                request: Request::Unload { slot },
                json,
            })
        }
        // Debug builds only, for the end-to-end tests (not in the usage).
        "debug-pressure" if cfg!(debug_assertions) => match words.as_slice() {
            [level] => serde_json::from_value(serde_json::Value::String(level.to_string()))
                .map(|level| Command::Ask {
                    request: Request::DebugPressure { level },
                    json,
                })
                .map_err(|_| format!("unknown pressure level {level:?}: normal, warn or critical")),
            _ => Err("debug-pressure takes one level: normal, warn or critical".into()),
        },
        _ => return None,
    })
}

/// Runs the command line if `args` hold a command; `None` to start the app.
pub fn run_if_command(args: &[String]) -> Option<i32> {
    let command = parse(args)?;
    attach_console();
    let env = |name: &str| std::env::var(name).ok();
    let (stdout, stderr) = (&mut std::io::stdout(), &mut std::io::stderr());
    Some(match command {
        Err(message) => {
            let _ = writeln!(stderr, "dormouse: {message}\n\n{USAGE}");
            EXIT_USAGE
        }
        Ok(Command::Help) => {
            let _ = writeln!(stdout, "{USAGE}");
            EXIT_OK
        }
        Ok(Command::Ask { request, json }) => {
            let Some(name) = socket_name(env) else {
                let _ = writeln!(
                    stderr,
                    "dormouse: no folder for the control socket on this system"
                );
                return Some(EXIT_FAILED);
            };
            ask_and_print(&name, &request, json, stdout, stderr)
        }
    })
}

/// Sends `request` to the app listening on `name` and prints its answer; returns the exit
/// status.
pub fn ask_and_print(
    name: &str,
    request: &Request,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let answer = match ask(name, request) {
        Ok(answer) => answer,
        Err(AskError::NotRunning) => {
            let _ = writeln!(err, "Dormouse is not running.");
            return EXIT_NOT_RUNNING;
        }
        Err(AskError::Failed(message)) => {
            let _ = writeln!(err, "dormouse: {message}");
            return EXIT_FAILED;
        }
    };
    let printed = match (&answer, json) {
        (Answer::Error(message), _) => {
            let _ = writeln!(err, "dormouse: {message}");
            return EXIT_FAILED;
        }
        (Answer::Done, _) => Ok("Done".to_owned()),
        (Answer::Status(status), true) => serde_json::to_string_pretty(status),
        (Answer::Unloaded(summary), true) => serde_json::to_string_pretty(summary),
        (Answer::Status(status), false) => Ok(status_text(status)),
        (Answer::Unloaded(summary), false) => Ok(unload_text(summary)),
    };
    match printed {
        Ok(text) => {
            let _ = writeln!(out, "{text}");
            EXIT_OK
        }
        Err(error) => {
            let _ = writeln!(err, "dormouse: {error}");
            EXIT_FAILED
        }
    }
}

/// Why no answer came.
#[derive(Debug)]
pub enum AskError {
    /// Nothing listens on the socket.
    NotRunning,
    /// Something listens but the exchange failed.
    Failed(String),
}

/// Sends one request and reads the answer.
pub fn ask(name: &str, request: &Request) -> Result<Answer, AskError> {
    let stream = connect(name).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            AskError::NotRunning
        }
        _ => AskError::Failed(format!("cannot reach Dormouse at {name}: {e}")),
    })?;
    let failed =
        |e: std::io::Error| AskError::Failed(format!("the exchange with Dormouse failed: {e}"));
    // An unload waits for models to finish unloading; a minute is far more than that takes.
    stream
        .set_recv_timeout(Some(Duration::from_secs(60)))
        .map_err(failed)?;
    let mut line = serde_json::to_string(request).map_err(|e| AskError::Failed(e.to_string()))?;
    line.push('\n');
    let mut writer = &stream;
    writer.write_all(line.as_bytes()).map_err(failed)?;
    writer.flush().map_err(failed)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .take(MAX_LINE)
        .read_line(&mut answer)
        .map_err(failed)?;
    serde_json::from_str(answer.trim())
        .map_err(|e| AskError::Failed(format!("unreadable answer from Dormouse: {e}")))
}

#[cfg(unix)]
fn connect(name: &str) -> std::io::Result<Stream> {
    use interprocess::local_socket::GenericFilePath;
    Stream::connect(name.to_fs_name::<GenericFilePath>()?)
}

#[cfg(windows)]
fn connect(name: &str) -> std::io::Result<Stream> {
    use interprocess::local_socket::GenericNamespaced;
    Stream::connect(name.to_ns_name::<GenericNamespaced>()?)
}

/// Megabytes for people.
fn megabytes(bytes: u64) -> String {
    crate::tray::megabytes(bytes)
}

/// "4m 12s", "1h 03m", "12s".
fn duration_words(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// The status for people: one line per model, then the total.
pub fn status_text(status: &StatusView) -> String {
    let mut lines = Vec::new();
    for model in &status.models {
        let state = match model.state {
            ModelStateView::Loaded => {
                let memory = model.resident_bytes.map(megabytes).unwrap_or_default();
                let expiry = match model.expires_at_ms {
                    Some(at) => format!(
                        "unloads in {}",
                        duration_words(at.saturating_sub(status.taken_at_ms))
                    ),
                    None if model.pinned => "pinned".to_owned(),
                    None if model.leases > 0 => "in use".to_owned(),
                    None => "stays loaded".to_owned(),
                };
                format!("loaded · {memory} · {expiry}")
            }
            ModelStateView::Loading => "loading".to_owned(),
            ModelStateView::Unloading => "unloading".to_owned(),
            ModelStateView::Failed => "failed to load".to_owned(),
            ModelStateView::Unloaded => "not loaded".to_owned(),
        };
        let slot = serde_json::to_value(model.slot)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        lines.push(format!("{} ({slot}): {state}", model.display_name));
    }
    lines.push(format!(
        "Total: {} loaded{}",
        megabytes(status.total_resident_bytes),
        if status.on_battery {
            " · on battery"
        } else {
            ""
        }
    ));
    lines.join("\n")
}

/// What an unload did, for people (the window's toast says the same).
pub fn unload_text(summary: &UnloadSummary) -> String {
    if summary.unloaded.is_empty()
        && summary.deferred.is_empty()
        && summary.cancelled_loads.is_empty()
    {
        return "No models were loaded".to_owned();
    }
    let mut parts = Vec::new();
    if !summary.unloaded.is_empty() {
        let names: Vec<&str> = summary
            .unloaded
            .iter()
            .map(|u| u.display_name.as_str())
            .collect();
        parts.push(format!(
            "Models unloaded: {} (freed {})",
            names.join(", "),
            megabytes(summary.total_freed_bytes)
        ));
    }
    if !summary.cancelled_loads.is_empty() {
        parts.push(format!(
            "cancelled {} load(s)",
            summary.cancelled_loads.len()
        ));
    }
    if !summary.deferred.is_empty() {
        parts.push(format!(
            "{} in use will unload when done",
            summary.deferred.len()
        ));
    }
    parts.join("; ")
}

/// A GUI build on Windows has no console: print into the one that started it, if any.
#[cfg(windows)]
fn attach_console() {
    use windows_sys::Win32::System::Console::{AttachConsole, ATTACH_PARENT_PROCESS};
    // SAFETY: plain call; failing (no parent console) just leaves output unseen.
    unsafe {
        AttachConsole(ATTACH_PARENT_PROCESS);
    }
}

#[cfg(not(windows))]
fn attach_console() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_command_line_is_parsed_and_anything_else_starts_the_app() {
        assert_eq!(parse(&args(&[])), None);
        assert_eq!(parse(&args(&["--some-launcher-flag"])), None);
        assert_eq!(
            parse(&args(&["status"])),
            Some(Ok(Command::Ask {
                request: Request::Status,
                json: false
            }))
        );
        assert_eq!(
            parse(&args(&["status", "--json"])),
            Some(Ok(Command::Ask {
                request: Request::Status,
                json: true
            }))
        );
        for all in [&["unload"][..], &["unload", "all"][..]] {
            assert_eq!(
                parse(&args(all)),
                Some(Ok(Command::Ask {
                    request: Request::Unload { slot: None },
                    json: false
                }))
            );
        }
        assert_eq!(
            parse(&args(&["unload", "--json", "segmentation"])),
            Some(Ok(Command::Ask {
                request: Request::Unload {
                    slot: Some(Slot::Segmentation)
                },
                json: true
            }))
        );
        assert_eq!(parse(&args(&["--help"])), Some(Ok(Command::Help)));
    }

    #[test]
    fn a_wrong_command_line_says_what_is_wrong() {
        let error = |words: &[&str]| {
            parse(&args(words))
                .expect("a command")
                .expect_err("refused")
        };
        assert!(error(&["unload", "whisper"]).contains("unknown model slot \"whisper\""));
        assert!(error(&["unload", "transcription", "segmentation"]).contains("one slot at most"));
        assert!(error(&["status", "now"]).contains("no argument"));
    }

    #[test]
    fn nothing_listening_means_not_running_with_its_own_exit_status() {
        let dir = tempfile::tempdir().expect("temp");
        let name = dir.path().join("nobody.sock").display().to_string();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = ask_and_print(&name, &Request::Status, false, &mut out, &mut err);
        assert_eq!(code, EXIT_NOT_RUNNING);
        assert_eq!(String::from_utf8_lossy(&err), "Dormouse is not running.\n");
        assert!(out.is_empty());
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_words(0), "0s");
        assert_eq!(duration_words(11_200), "12s");
        assert_eq!(duration_words(252_000), "4m 12s");
        assert_eq!(duration_words(3_780_000), "1h 03m");
    }
}
