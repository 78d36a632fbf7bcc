//! Parser for DRBD 9 `drbdsetup events2 --statistics` output.
//!
//! DRBD 9 dropped per-device counters from `/proc/drbd`; the event stream
//! is the supported way to read them without parsing `drbdsetup status`.
//! Each line is `exists|create|change|destroy OBJECT key:value …`, and
//! `change` lines carry only the fields that changed, so the parser keeps a
//! state ([`Events2State`]) that lines are applied to. Pure and panic-free.

use std::collections::{BTreeMap, BTreeSet};

/// The verb at the start of an event line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Part of the initial state dump.
    Exists,
    /// An object appeared.
    Create,
    /// Some fields of an object changed (or fresh statistics after `n`).
    Change,
    /// An object went away.
    Destroy,
    /// `call`/`response` (helper scripts) and anything newer.
    Other,
}

/// One parsed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The verb.
    pub kind: EventKind,
    /// `resource`, `connection`, `device`, `peer-device`, `path`, `helper`, …
    pub object: String,
    /// `key:value` pairs in line order (values may contain `:`).
    pub fields: Vec<(String, String)>,
}

impl Event {
    /// The value of `key`, if the line has it.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What a line was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Events2Line {
    /// `exists -`: the initial dump is complete.
    EndOfInitialDump,
    /// An event.
    Event(Event),
    /// Blank, truncated or not an event.
    Ignored,
}

fn kind_of(word: &str) -> Option<EventKind> {
    Some(match word {
        "exists" => EventKind::Exists,
        "create" => EventKind::Create,
        "change" => EventKind::Change,
        "destroy" => EventKind::Destroy,
        "call" | "response" => EventKind::Other,
        _ => return None,
    })
}

/// Parses one line. A leading `--timestamps` stamp is skipped.
pub fn parse_events2_line(line: &str) -> Events2Line {
    let mut words = line.split_whitespace().peekable();
    let kind = match words.next() {
        None => return Events2Line::Ignored,
        Some(first) => match kind_of(first) {
            Some(kind) => kind,
            None => match words.next().and_then(kind_of) {
                Some(kind) => kind,
                None => return Events2Line::Ignored,
            },
        },
    };
    let Some(object) = words.next() else {
        return Events2Line::Ignored;
    };
    if object == "-" {
        return if kind == EventKind::Exists {
            Events2Line::EndOfInitialDump
        } else {
            Events2Line::Ignored
        };
    }
    let fields = words
        .filter_map(|w| w.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Events2Line::Event(Event {
        kind,
        object: object.to_owned(),
        fields,
    })
}

/// Identifies one peer device: one volume of one resource towards one peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerDeviceKey {
    /// Resource name (`name:`).
    pub resource: String,
    /// `peer-node-id:`.
    pub peer_node_id: String,
    /// `volume:`.
    pub volume: String,
}

/// What we know about a peer device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerDeviceInfo {
    /// `conn-name:`, the peer's host name.
    pub conn_name: Option<String>,
    /// `replication:`, e.g. `Established`, `SyncSource`, `Off`.
    pub replication: Option<String>,
    /// `peer-disk:`, e.g. `UpToDate`, `Diskless`.
    pub peer_disk: Option<String>,
    /// `sent:` KiB, cumulative, 64-bit; resets when the object is recreated.
    pub sent_kib: Option<u64>,
}

/// What we know about a connection (resource × peer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// `conn-name:`.
    pub conn_name: Option<String>,
    /// `connection:`, e.g. `Connected`, `Connecting`, `StandAlone`.
    pub connection: Option<String>,
}

/// What we know about a local device (one volume of a resource).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `minor:`, the N of `/dev/drbdN`.
    pub minor: Option<u32>,
    /// `disk:`, e.g. `UpToDate`, `Diskless`.
    pub disk: Option<String>,
}

/// The state the event stream describes, built up line by line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Events2State {
    /// Resources seen (and not destroyed).
    pub resources: BTreeSet<String>,
    /// Connections by (resource, peer-node-id).
    pub connections: BTreeMap<(String, String), ConnectionInfo>,
    /// Local devices by (resource, volume).
    pub devices: BTreeMap<(String, String), DeviceInfo>,
    /// Peer devices.
    pub peer_devices: BTreeMap<PeerDeviceKey, PeerDeviceInfo>,
    /// `exists -` was seen.
    pub initial_dump_done: bool,
}

fn set(slot: &mut Option<String>, value: Option<&str>) {
    if let Some(v) = value {
        *slot = Some(v.to_owned());
    }
}

impl Events2State {
    /// Applies one line. Returns the peer device whose `sent:` the line
    /// carried, so a poller can tell when every peer device has reported.
    pub fn apply_line(&mut self, line: &str) -> Option<PeerDeviceKey> {
        match parse_events2_line(line) {
            Events2Line::EndOfInitialDump => {
                self.initial_dump_done = true;
                None
            }
            Events2Line::Event(event) => self.apply(&event),
            Events2Line::Ignored => None,
        }
    }

    /// Applies one event (see [`Events2State::apply_line`]).
    pub fn apply(&mut self, event: &Event) -> Option<PeerDeviceKey> {
        if event.kind == EventKind::Other {
            return None;
        }
        let resource = event.field("name")?.to_owned();
        let destroy = event.kind == EventKind::Destroy;
        match event.object.as_str() {
            "resource" => {
                if destroy {
                    self.resources.remove(&resource);
                    self.connections.retain(|(r, _), _| *r != resource);
                    self.devices.retain(|(r, _), _| *r != resource);
                    self.peer_devices.retain(|k, _| k.resource != resource);
                } else {
                    self.resources.insert(resource);
                }
                None
            }
            "connection" => {
                let key = (resource.clone(), event.field("peer-node-id")?.to_owned());
                if destroy {
                    self.connections.remove(&key);
                    return None;
                }
                self.resources.insert(resource);
                let info = self.connections.entry(key).or_default();
                set(&mut info.conn_name, event.field("conn-name"));
                set(&mut info.connection, event.field("connection"));
                None
            }
            "peer-device" => {
                let key = PeerDeviceKey {
                    resource: resource.clone(),
                    peer_node_id: event.field("peer-node-id")?.to_owned(),
                    volume: event.field("volume")?.to_owned(),
                };
                if destroy {
                    self.peer_devices.remove(&key);
                    return None;
                }
                self.resources.insert(resource);
                let info = self.peer_devices.entry(key.clone()).or_default();
                set(&mut info.conn_name, event.field("conn-name"));
                set(&mut info.replication, event.field("replication"));
                set(&mut info.peer_disk, event.field("peer-disk"));
                let sent = event.field("sent").and_then(|v| v.parse::<u64>().ok());
                if sent.is_some() {
                    info.sent_kib = sent;
                    Some(key)
                } else {
                    None
                }
            }
            "device" => {
                let key = (resource.clone(), event.field("volume")?.to_owned());
                if destroy {
                    self.devices.remove(&key);
                    return None;
                }
                self.resources.insert(resource);
                let info = self.devices.entry(key).or_default();
                if let Some(minor) = event.field("minor").and_then(|m| m.parse().ok()) {
                    info.minor = Some(minor);
                }
                set(&mut info.disk, event.field("disk"));
                None
            }
            _ => None,
        }
    }

    /// Peer devices of `resource`.
    pub fn peer_devices_of<'a>(
        &'a self,
        resource: &'a str,
    ) -> impl Iterator<Item = (&'a PeerDeviceKey, &'a PeerDeviceInfo)> + 'a {
        self.peer_devices
            .iter()
            .filter(move |(k, _)| k.resource == resource)
    }

    /// The (resource, volume) whose device is `/dev/drbd{minor}`.
    pub fn device_by_minor(&self, minor: u32) -> Option<(&str, &str)> {
        self.devices
            .iter()
            .find(|(_, info)| info.minor == Some(minor))
            .map(|((resource, volume), _)| (resource.as_str(), volume.as_str()))
    }

    /// Connections of `resource` as (peer-node-id, info).
    pub fn connections_of<'a>(
        &'a self,
        resource: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a ConnectionInfo)> + 'a {
        self.connections
            .iter()
            .filter(move |((r, _), _)| r == resource)
            .map(|((_, peer), info)| (peer.as_str(), info))
    }
}

/// Applies every line of `text` to a fresh state (for dumps and tests).
pub fn parse_events2(text: &str) -> Events2State {
    let mut state = Events2State::default();
    for line in text.lines() {
        state.apply_line(line);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn peer_device_line() {
        let s = parse_events2(
            "exists peer-device name:r0 peer-node-id:1 conn-name:peer volume:0 replication:Established peer-disk:UpToDate resync-suspended:no received:0 sent:1234 out-of-sync:0 pending:0 unacked:0\nexists -\n",
        );
        assert!(s.initial_dump_done);
        let (key, info) = s.peer_devices_of("r0").next().unwrap();
        assert_eq!(key.peer_node_id, "1");
        assert_eq!(key.volume, "0");
        assert_eq!(info.sent_kib, Some(1234));
        assert_eq!(info.replication.as_deref(), Some("Established"));
        assert_eq!(info.conn_name.as_deref(), Some("peer"));
    }

    #[test]
    fn change_merges_and_destroy_removes() {
        let mut s = parse_events2(
            "exists connection name:r0 peer-node-id:1 conn-name:peer connection:Connected role:Secondary\n\
             exists peer-device name:r0 peer-node-id:1 conn-name:peer volume:0 replication:Established sent:10\n",
        );
        let key = s.apply_line(
            "change peer-device name:r0 peer-node-id:1 conn-name:peer volume:0 sent:25",
        );
        assert_eq!(key.map(|k| k.volume), Some("0".to_owned()));
        let info = s.peer_devices_of("r0").next().unwrap().1;
        assert_eq!(info.sent_kib, Some(25));
        assert_eq!(info.replication.as_deref(), Some("Established"));
        s.apply_line(
            "change connection name:r0 peer-node-id:1 conn-name:peer connection:Connecting",
        );
        assert_eq!(
            s.connections_of("r0")
                .next()
                .unwrap()
                .1
                .connection
                .as_deref(),
            Some("Connecting")
        );
        s.apply_line("destroy peer-device name:r0 peer-node-id:1 conn-name:peer volume:0");
        assert_eq!(s.peer_devices_of("r0").count(), 0);
    }

    #[test]
    fn devices_by_minor() {
        let mut s = parse_events2(
            "exists device name:r0 volume:0 minor:3 disk:UpToDate\n\
             exists device name:r0 volume:1 minor:4 disk:Diskless\n",
        );
        assert_eq!(s.device_by_minor(4), Some(("r0", "1")));
        assert_eq!(
            s.devices[&("r0".to_owned(), "1".to_owned())]
                .disk
                .as_deref(),
            Some("Diskless")
        );
        assert_eq!(s.device_by_minor(5), None);
        s.apply_line("destroy device name:r0 volume:1");
        assert_eq!(s.device_by_minor(4), None);
    }

    #[test]
    fn timestamps_are_skipped() {
        let line = "2024-05-01T10:00:00.000000+00:00 change peer-device name:r0 peer-node-id:2 volume:1 sent:7";
        let s = parse_events2(line);
        assert_eq!(s.peer_devices_of("r0").next().unwrap().1.sent_kib, Some(7));
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse_events2(&text);
        }

        #[test]
        fn never_panics_on_event_shaped_noise(text in "((exists|change|destroy|create|call) (peer-device|connection|resource|device|-)( (name|peer-node-id|volume|sent|connection|replication):[a-z0-9:]{0,8}){0,6}\n?){0,20}") {
            let _ = parse_events2(&text);
        }
    }
}
