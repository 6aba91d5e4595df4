//! Shows what herald does with one envelope, without Kafka or Redis:
//!
//! ```sh
//! cargo run -q --example route < tests/fixtures/envelopes/batch_file_added/basic.dumps.json
//! cargo run -q --example route -- --topics
//! ```
//!
//! It routes the envelope, runs the generated handler, and prints the notification as JSON: its
//! name, who it is for, and the message that would be published on `ws:{user_id}`.

use std::future::Future;
use std::io::Read;
use std::pin::pin;
use std::process::ExitCode;
use std::task::{Context, Poll, Waker};

use herald::runtime::Notification;
use herald::{EventEnvelope, EventHandler};
use serde_json::json;
use serde_json::value::RawValue;

/// Describes, as JSON, the notification the generated handler delivers.
struct Printer;

impl EventHandler for Printer {
    type Output = serde_json::Value;
    type Error = std::convert::Infallible;

    fn deliver(&self, notification: Notification) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send {
        let message: serde_json::Value =
            serde_json::from_slice(&notification.encode_message("example")).unwrap_or_default();
        std::future::ready(Ok(json!({
            "notification": notification.name,
            "event_type": notification.event_type,
            "user": notification.user,
            "batch": notification.batch,
            "batch_owner": notification.batch_owner,
            "channel": notification.user.as_deref().map(herald::runtime::user_channel),
            "message": message,
        })))
    }

    fn handle_unknown(
        &self,
        envelope: &EventEnvelope<Box<RawValue>>,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send {
        std::future::ready(Ok(json!({ "unknown_event_type": envelope.event_type })))
    }
}

fn main() -> ExitCode {
    if std::env::args().any(|arg| arg == "--topics") {
        for topic in herald::TOPICS {
            println!("{topic}");
        }
        return ExitCode::SUCCESS;
    }
    let mut bytes = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("cannot read standard input: {error}");
        return ExitCode::FAILURE;
    }
    let envelope = match herald::route(&bytes) {
        Ok(envelope) => envelope,
        Err(error) => {
            println!("{}", json!({ "error": error.reason(), "message": error.to_string() }));
            return ExitCode::FAILURE;
        }
    };
    let variant = format!("{:?}", envelope.data).split('(').next().unwrap_or_default().to_owned();
    // The printer's futures are ready at once, so one poll runs the handler to completion.
    let handled = pin!(herald::dispatch(&Printer, envelope)).poll(&mut Context::from_waker(Waker::noop()));
    let Poll::Ready(Ok(mut output)) = handled else {
        eprintln!("the handler did not finish");
        return ExitCode::FAILURE;
    };
    output["variant"] = json!(variant);
    println!("{}", serde_json::to_string_pretty(&output).unwrap_or_default());
    ExitCode::SUCCESS
}
