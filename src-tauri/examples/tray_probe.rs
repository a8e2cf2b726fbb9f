//! The desktop side of the tray, for the end-to-end tests on Linux: a StatusNotifier watcher
//! (what a desktop's panel runs, so libayatana-appindicator exports the app's item and its
//! menu), and a client that reads the item's exported menu (`com.canonical.dbusmenu`) and
//! clicks an entry, as a panel does when the user picks it. All on the session D-Bus.
//!
//! ```text
//! tray_probe watch          own org.kde.StatusNotifierWatcher until killed
//! tray_probe wait-watcher   return once a watcher is on the bus (10 s at most)
//! tray_probe menu           print the menu of the first registered item: "id<TAB>enabled<TAB>label" per entry
//! tray_probe click PREFIX   send "clicked" to the first entry whose label starts with PREFIX
//! ```
//! Exit status 1 with a message when something is missing (no watcher, no item, no entry).

#[cfg(target_os = "linux")]
mod probe {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use zbus::blocking::{connection, Connection, Proxy};
    use zbus::message::Header;
    use zbus::object_server::SignalEmitter;
    use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

    const WATCHER: &str = "org.kde.StatusNotifierWatcher";
    const WATCHER_PATH: &str = "/StatusNotifierWatcher";

    struct Watcher {
        items: Arc<Mutex<Vec<String>>>,
    }

    #[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
    impl Watcher {
        async fn register_status_notifier_item(
            &self,
            service: &str,
            #[zbus(header)] header: Header<'_>,
            #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        ) {
            let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
            // An item registers with its object path (libayatana) or its bus name.
            let item = if service.starts_with('/') {
                format!("{sender}{service}")
            } else {
                service.to_string()
            };
            println!("registered {item}");
            if let Ok(mut items) = self.items.lock() {
                items.push(item.clone());
            }
            let _ = Self::status_notifier_item_registered(&emitter, &item).await;
        }

        fn register_status_notifier_host(&self, _service: &str) {}

        #[zbus(property)]
        fn registered_status_notifier_items(&self) -> Vec<String> {
            self.items.lock().map(|i| i.clone()).unwrap_or_default()
        }

        #[zbus(property)]
        fn is_status_notifier_host_registered(&self) -> bool {
            true
        }

        #[zbus(property)]
        fn protocol_version(&self) -> i32 {
            0
        }

        #[zbus(signal)]
        async fn status_notifier_item_registered(
            emitter: &SignalEmitter<'_>,
            item: &str,
        ) -> zbus::Result<()>;
    }

    fn fail(message: String) -> ! {
        eprintln!("tray_probe: {message}");
        std::process::exit(1)
    }

    fn bus() -> Connection {
        Connection::session().unwrap_or_else(|e| fail(format!("no session D-Bus: {e}")))
    }

    pub fn watch() {
        let items = Arc::new(Mutex::new(Vec::new()));
        let _bus = connection::Builder::session()
            .and_then(|b| b.name(WATCHER))
            .and_then(|b| b.serve_at(WATCHER_PATH, Watcher { items }))
            .and_then(|b| b.build())
            .unwrap_or_else(|e| fail(format!("cannot own {WATCHER}: {e}")));
        println!("watching");
        loop {
            std::thread::park();
        }
    }

    pub fn wait_watcher() {
        let bus = bus();
        let dbus = zbus::blocking::fdo::DBusProxy::new(&bus)
            .unwrap_or_else(|e| fail(format!("no bus daemon: {e}")));
        let until = Instant::now() + Duration::from_secs(10);
        while !dbus
            .name_has_owner(
                WATCHER
                    .try_into()
                    .unwrap_or_else(|_| fail("bad name".into())),
            )
            .unwrap_or(false)
        {
            if Instant::now() > until {
                fail(format!("no {WATCHER} on the bus after 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The newest registered item whose owner is still on the bus (an app that quit leaves
    /// its registration behind in this simple watcher): its bus name and path.
    fn item(bus: &Connection) -> (String, String) {
        let watcher = Proxy::new(bus, WATCHER, WATCHER_PATH, WATCHER)
            .unwrap_or_else(|e| fail(format!("no watcher: {e}")));
        let items: Vec<String> = watcher
            .get_property("RegisteredStatusNotifierItems")
            .unwrap_or_else(|e| fail(format!("no items: {e}")));
        let dbus = zbus::blocking::fdo::DBusProxy::new(bus)
            .unwrap_or_else(|e| fail(format!("no bus daemon: {e}")));
        let split = |item: &String| match item.find('/') {
            Some(i) => (item[..i].to_string(), item[i..].to_string()),
            None => (item.clone(), "/StatusNotifierItem".to_string()),
        };
        items
            .iter()
            .rev()
            .map(split)
            .find(|(name, _)| {
                zbus::names::BusName::try_from(name.as_str())
                    .ok()
                    .and_then(|n| dbus.name_has_owner(n).ok())
                    .unwrap_or(false)
            })
            .unwrap_or_else(|| fail(format!("no live StatusNotifier item among {items:?}")))
    }

    /// One menu entry: id, enabled, label.
    type Entry = (i32, bool, String);

    fn unwrap_value<'a>(value: &'a Value<'a>) -> &'a Value<'a> {
        match value {
            Value::Value(inner) => unwrap_value(inner),
            other => other,
        }
    }

    /// A dbusmenu layout node: id, properties, children (each a variant holding a node).
    type Node = (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>);

    fn collect(node: Node, out: &mut Vec<Entry>) {
        let (id, props, children) = node;
        let label = props
            .get("label")
            .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
            .unwrap_or_default();
        let enabled = props
            .get("enabled")
            .and_then(|v| bool::try_from(v.try_clone().ok()?).ok())
            .unwrap_or(true);
        if id != 0 && !label.is_empty() {
            out.push((id, enabled, label.replace('_', "")));
        }
        for child in children {
            let value: Value<'_> = unwrap_value(&child)
                .try_clone()
                .unwrap_or(Value::Bool(false));
            match Node::try_from(value) {
                Ok(node) => collect(node, out),
                Err(error) => fail(format!("unreadable menu entry under {id}: {error}")),
            }
        }
    }

    fn menu_of(bus: &Connection) -> (Proxy<'static>, Vec<Entry>) {
        let (name, path) = item(bus);
        let item = Proxy::new(bus, name.clone(), path, "org.kde.StatusNotifierItem")
            .unwrap_or_else(|e| fail(format!("no item proxy: {e}")));
        let menu_path: OwnedObjectPath = item
            .get_property("Menu")
            .unwrap_or_else(|e| fail(format!("the item exports no menu: {e}")));
        let menu = Proxy::new(bus, name, menu_path, "com.canonical.dbusmenu")
            .unwrap_or_else(|e| fail(format!("no menu proxy: {e}")));
        let (_revision, layout): (u32, Node) = menu
            .call("GetLayout", &(0i32, -1i32, Vec::<String>::new()))
            .unwrap_or_else(|e| fail(format!("GetLayout failed: {e}")));
        let mut entries = Vec::new();
        collect(layout, &mut entries);
        (menu, entries)
    }

    pub fn menu() {
        let bus = bus();
        for (id, enabled, label) in menu_of(&bus).1 {
            println!("{id}\t{enabled}\t{label}");
        }
    }

    pub fn click(prefix: &str) {
        let bus = bus();
        let (menu, entries) = menu_of(&bus);
        let Some((id, _, label)) = entries.iter().find(|(_, _, l)| l.starts_with(prefix)) else {
            fail(format!("no menu entry starts with {prefix:?}: {entries:?}"))
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        let () = menu
            .call("Event", &(*id, "clicked", Value::from(0i32), now))
            .unwrap_or_else(|e| fail(format!("Event failed: {e}")));
        println!("clicked {label}");
    }
}

#[cfg(target_os = "linux")]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["watch"] => probe::watch(),
        ["wait-watcher"] => probe::wait_watcher(),
        ["menu"] => probe::menu(),
        ["click", prefix] => probe::click(prefix),
        _ => {
            eprintln!("usage: tray_probe watch | wait-watcher | menu | click PREFIX");
            std::process::exit(2);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("tray_probe talks to the Linux desktop's D-Bus only");
    std::process::exit(2);
}
