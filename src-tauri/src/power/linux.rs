//! Linux's power source: the kernel's `power_supply` class (`/sys/class/power_supply`, one
//! folder per supply with its `type`, `online`, `scope` and `status` files). Changes are
//! announced on the kernel's uevent netlink socket (the one udev listens to; receiving its
//! broadcasts needs no privilege): the watcher blocks on it and re-reads the folder only
//! when a `SUBSYSTEM=power_supply` event arrives.
//!
//! The rule (what UPower's `OnBattery` says, without needing UPower): on mains when any
//! external supply (`Mains`, `USB`, …) is online; else on battery when a system battery
//! (not a mouse's: `scope` ≠ `Device`) is discharging, or when external supplies exist and
//! none is online while a system battery is present; on mains otherwise (a desktop).

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use model_manager::PowerSource;
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{recv, socket_with, AddressFamily, RecvFlags};
use rustix::net::{SocketFlags, SocketType};

/// Where the kernel lists the power supplies.
pub const POWER_SUPPLY: &str = "/sys/class/power_supply";

/// Reads the power source from a `power_supply` folder (`root`: the real one, or a test's).
/// A folder that cannot be listed is an error; an unreadable supply is skipped.
pub fn read_power_source(root: &Path) -> io::Result<PowerSource> {
    let read = |dir: &Path, name: &str| -> Option<String> {
        fs::read_to_string(dir.join(name))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let (mut external, mut external_online) = (false, false);
    let (mut battery, mut discharging) = (false, false);
    for entry in fs::read_dir(root)? {
        let dir: PathBuf = entry?.path();
        let Some(kind) = read(&dir, "type") else {
            continue;
        };
        if kind == "Battery" {
            if read(&dir, "scope").as_deref() == Some("Device") {
                continue; // a peripheral's battery (mouse, headset)
            }
            battery = true;
            discharging |= read(&dir, "status").as_deref() == Some("Discharging");
        } else {
            external = true;
            external_online |= read(&dir, "online").as_deref() == Some("1");
        }
    }
    Ok(if external_online {
        PowerSource::Mains
    } else if discharging || (battery && external) {
        PowerSource::Battery
    } else {
        PowerSource::Mains
    })
}

/// Whether a kernel uevent (NUL-separated `KEY=value` fields after an `action@devpath`
/// header) is about a power supply.
pub fn is_power_supply_event(message: &[u8]) -> bool {
    message
        .split(|&b| b == 0)
        .any(|field| field == b"SUBSYSTEM=power_supply")
}

/// Opens the kernel's uevent socket (group 1: the kernel's own broadcasts).
fn uevent_socket() -> io::Result<OwnedFd> {
    let fd = socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::KOBJECT_UEVENT),
    )?;
    rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 1))?;
    Ok(fd)
}

/// Reports the power source read from `root` now and again after each `power_supply`
/// uevent (only when it changed).
pub fn watch(
    root: &Path,
    report: impl Fn(PowerSource) + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let socket = uevent_socket()?;
    let mut last = read_power_source(root)?;
    tracing::info!(source = ?last, "power source");
    report(last);
    let root = root.to_path_buf();
    std::thread::Builder::new()
        .name("dormouse-power".into())
        .spawn(move || {
            let mut buffer = vec![0u8; 8192];
            loop {
                let n = match recv(&socket, &mut buffer[..], RecvFlags::empty()) {
                    Ok((n, _)) => n.min(buffer.len()),
                    Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::NOBUFS) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "the uevent socket failed: power changes are no longer seen");
                        return;
                    }
                };
                if !is_power_supply_event(&buffer[..n]) {
                    continue;
                }
                match read_power_source(&root) {
                    Ok(now) if now != last => {
                        tracing::info!(source = ?now, "power source changed");
                        last = now;
                        report(now);
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "cannot read the power supplies"),
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `power_supply` folder: each supply a folder of one-line files.
    fn supply(root: &Path, name: &str, files: &[(&str, &str)]) {
        let dir = root.join(name);
        fs::create_dir_all(&dir).expect("mkdir");
        for (file, value) in files {
            fs::write(dir.join(file), format!("{value}\n")).expect("write");
        }
    }

    fn laptop(ac_online: &str, battery_status: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        supply(
            root.path(),
            "AC",
            &[("type", "Mains"), ("online", ac_online)],
        );
        supply(
            root.path(),
            "BAT0",
            &[
                ("type", "Battery"),
                ("status", battery_status),
                ("scope", "System"),
            ],
        );
        root
    }

    #[test]
    fn a_laptop_unplugged_is_on_battery_and_plugged_in_on_mains() {
        let unplugged = laptop("0", "Discharging");
        assert_eq!(
            read_power_source(unplugged.path()).expect("reads"),
            PowerSource::Battery
        );
        for status in ["Charging", "Full", "Not charging"] {
            let plugged = laptop("1", status);
            assert_eq!(
                read_power_source(plugged.path()).expect("reads"),
                PowerSource::Mains
            );
        }
    }

    #[test]
    fn unplugged_with_a_full_battery_that_does_not_say_discharging_is_on_battery() {
        let root = laptop("0", "Full");
        assert_eq!(
            read_power_source(root.path()).expect("reads"),
            PowerSource::Battery
        );
    }

    #[test]
    fn a_usb_c_charger_counts_as_mains() {
        let root = tempfile::tempdir().expect("tempdir");
        supply(
            root.path(),
            "ucsi-source-psy-USBC000:001",
            &[("type", "USB"), ("online", "1")],
        );
        supply(root.path(), "AC", &[("type", "Mains"), ("online", "0")]);
        supply(
            root.path(),
            "BAT1",
            &[("type", "Battery"), ("status", "Charging")],
        );
        assert_eq!(
            read_power_source(root.path()).expect("reads"),
            PowerSource::Mains
        );
    }

    #[test]
    fn a_desktop_with_no_supplies_or_only_a_mouse_battery_is_on_mains() {
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            read_power_source(empty.path()).expect("reads"),
            PowerSource::Mains
        );
        let mouse = tempfile::tempdir().expect("tempdir");
        supply(
            mouse.path(),
            "hidpp_battery_0",
            &[
                ("type", "Battery"),
                ("scope", "Device"),
                ("status", "Discharging"),
            ],
        );
        assert_eq!(
            read_power_source(mouse.path()).expect("reads"),
            PowerSource::Mains
        );
    }

    #[test]
    fn a_supply_without_a_type_is_skipped_and_a_missing_folder_is_an_error() {
        let root = laptop("0", "Discharging");
        fs::create_dir_all(root.path().join("broken")).expect("mkdir");
        assert_eq!(
            read_power_source(root.path()).expect("reads"),
            PowerSource::Battery
        );
        assert!(read_power_source(&root.path().join("nope")).is_err());
    }

    #[test]
    fn this_machines_real_power_supply_folder_reads() {
        // Whatever this machine is (CI's VM has no supplies at all), the real folder must
        // read without error where it exists.
        if Path::new(POWER_SUPPLY).exists() {
            read_power_source(Path::new(POWER_SUPPLY)).expect("the real folder reads");
        }
    }

    #[test]
    fn only_power_supply_uevents_count() {
        let ac = b"change@/devices/LNXSYSTM:00/ACPI0003:00/power_supply/AC\0ACTION=change\0DEVPATH=/devices/LNXSYSTM:00/ACPI0003:00/power_supply/AC\0SUBSYSTEM=power_supply\0POWER_SUPPLY_ONLINE=0\0SEQNUM=4242\0";
        assert!(is_power_supply_event(ac));
        let usb = b"add@/devices/pci0000:00/usb1/1-1\0ACTION=add\0SUBSYSTEM=usb\0SEQNUM=1\0";
        assert!(!is_power_supply_event(usb));
        assert!(!is_power_supply_event(b"SUBSYSTEM=power_supply_extra\0"));
    }

    #[test]
    fn the_watcher_reports_the_fake_trees_source_at_once() {
        // The uevent socket is real (no privilege needed); the tree is the test's.
        let root = laptop("0", "Discharging");
        let (tx, rx) = std::sync::mpsc::channel();
        let _watcher = watch(root.path(), move |s| tx.send(s).expect("listening"))
            .expect("the uevent socket opens");
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(5))
                .expect("reported"),
            PowerSource::Battery
        );
    }
}
