//! Which records of a partition must wait for which: records that share an ordering key run one
//! after the other, in the order they were received; records that share none run at once.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::SetOnce;

/// A record's turn: set once the record is handled, so that the next record of its keys may run.
/// A record interrupted before it was handled (shutdown, revoked partition) never sets it: what
/// waits for it is abandoned too, and redelivered in order.
pub(crate) type Turn = Arc<SetOnce<()>>;

/// The key of every record of a partition that is dead-lettered (bad input, unknown event types):
/// they are written to the dead-letter topic in the order they were read.
pub(crate) const DEAD_LETTER_KEY: &str = "d:";

/// The keys a record is ordered by, from the routed event (never from the Kafka key, which
/// producers choose for their own reasons):
///
/// - `u:<user>`: the user it notifies, so a user's notifications are published in record order
///   (ids of a user increase in publish order);
/// - `b:<batch>`: the batch it is about (the batch whose owner it notifies when it names no user,
///   or the batch whose owner it reveals), so parking, ownership and release see a batch's
///   records in record order.
///
/// An event no definition claims is bad input: it has the key [`DEAD_LETTER_KEY`]. A known event
/// that names nobody has no key and waits for nothing.
pub(crate) fn ordering_keys(event: &herald::Event) -> Vec<String> {
    if let herald::Event::Unknown(_) = event {
        return vec![DEAD_LETTER_KEY.to_owned()];
    }
    let recipient = event.recipient();
    let owner = event.batch_owner();
    let users = recipient.user.into_iter().chain(owner.map(|owner| owner.user));
    let batches = recipient.batch.into_iter().chain(owner.map(|owner| owner.batch));
    let mut keys: Vec<String> =
        users.map(|user| format!("u:{user}")).chain(batches.map(|batch| format!("b:{batch}"))).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The ordering state of one partition: the latest record received for each key.
#[derive(Debug)]
pub(crate) struct KeyedOrder {
    /// The turn of the latest record admitted with each key; entries whose record is done are
    /// dropped once the map grows past `prune_above`.
    latest: HashMap<String, Turn>,
    prune_above: usize,
}

impl KeyedOrder {
    /// `in_flight` bounds the records not yet done, and so the keys worth remembering.
    pub(crate) fn new(in_flight: usize) -> Self {
        KeyedOrder { latest: HashMap::new(), prune_above: in_flight.saturating_mul(4).max(64) }
    }

    /// Admits the partition's next record with its `keys`. Returns the turns it must wait for
    /// (the previous record of each key, when not yet done) and its own turn, to set when done.
    pub(crate) fn admit(&mut self, keys: Vec<String>) -> (Vec<Turn>, Turn) {
        if self.latest.len() > self.prune_above {
            // Amortised: what stays is only records in flight, at most two keys each.
            self.latest.retain(|_, turn| !turn.initialized());
        }
        let turn: Turn = Arc::new(SetOnce::new());
        let mut waits = Vec::new();
        for key in keys {
            if let Some(previous) = self.latest.insert(key, Arc::clone(&turn))
                && !previous.initialized()
                && !waits.iter().any(|wait| Arc::ptr_eq(wait, &previous))
            {
                waits.push(previous);
            }
        }
        (waits, turn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admits records with the given keys in order (`done` lists those already handled when the
    /// next is admitted: handled right after their admission); checks which earlier records each
    /// one waits for, by index.
    fn check(records: &[(&[&str], bool)], expected: &[&[usize]]) {
        let mut order = KeyedOrder::new(64);
        let mut turns: Vec<Turn> = Vec::new();
        for (index, (keys, done)) in records.iter().enumerate() {
            let (waits, turn) = order.admit(keys.iter().map(|key| (*key).to_owned()).collect());
            let mut waited: Vec<usize> = waits
                .iter()
                .map(|wait| turns.iter().position(|turn| Arc::ptr_eq(turn, wait)).expect("waits for an earlier record"))
                .collect();
            waited.sort_unstable();
            assert_eq!(waited, expected[index], "record {index} of {records:?}");
            if *done {
                turn.set(()).unwrap();
            }
            turns.push(turn);
        }
    }

    #[test]
    fn records_sharing_a_key_wait_for_the_previous_one() {
        // Different users run at once; the same user waits for its previous record only.
        check(&[(&["u:a"], false), (&["u:b"], false), (&["u:a"], false), (&["u:a"], false)], &[&[], &[], &[0], &[2]]);
        // A record revealing a batch's owner waits for the user's and the batch's previous records,
        // and both keys' next records wait for it.
        check(
            &[(&["b:x"], false), (&["u:a"], false), (&["b:x", "u:a"], false), (&["b:x"], false), (&["u:a"], false)],
            &[&[], &[], &[0, 1], &[2], &[2]],
        );
        // A record already handled is not waited for.
        check(&[(&["u:a"], true), (&["u:a"], false)], &[&[], &[]]);
        // No key: waits for nothing, and nothing waits for it.
        check(&[(&[], false), (&[], false), (&["u:a"], false)], &[&[], &[], &[]]);
        // Two keys held by the same earlier record give one wait.
        check(&[(&["b:x", "u:a"], false), (&["b:x", "u:a"], false)], &[&[], &[0]]);
    }

    #[test]
    fn done_records_are_forgotten_as_the_map_grows() {
        let mut order = KeyedOrder::new(1);
        for user in 0..1000 {
            let (_, turn) = order.admit(vec![format!("u:{user}")]);
            turn.set(()).unwrap();
        }
        assert!(order.latest.len() <= 65, "{} keys remembered", order.latest.len());
    }

    #[test]
    fn a_routed_event_is_ordered_by_its_user_and_its_batch() {
        fn check(notification: &str, case: &str, expected: &[&str]) {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../tests/fixtures/envelopes/{notification}/{case}.compact.json"));
            let envelope = herald::route(&std::fs::read(&path).unwrap()).unwrap();
            let recipient = envelope.data.recipient();
            let mut keys: Vec<String> = expected
                .iter()
                .map(|key| match *key {
                    "user" => format!("u:{}", recipient.user.unwrap()),
                    "batch" => format!("b:{}", recipient.batch.unwrap()),
                    other => panic!("{other}"),
                })
                .collect();
            keys.sort_unstable();
            assert_eq!(ordering_keys(&envelope.data), keys, "{notification}/{case}");
        }
        check("class_created", "basic", &["user"]);
        check("batch_essays_ready", "basic", &["batch"]);
        check("batch_file_added", "basic", &["batch", "user"]);
        // "unknown" names nobody: the record is ordered by its batch only.
        check("batch_content_provisioning_completed", "unknown_user", &["batch"]);
        let unknown = herald::route(
            &std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../tests/fixtures/envelopes/_unknown/batch_essays_registered.compact.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(ordering_keys(&unknown.data), [DEAD_LETTER_KEY]);
    }
}
