#[derive(serde::Serialize, herald_macros::Event)]
#[herald(
    event_type = "e",
    topics("t"),
    notification = "n",
    category = "batch_progress",
    priority = "low",
    recipient(user = user_id),
    forward(user_id),
)]
#[serde(rename_all = "camelCase")]
struct Created {
    user_id: String,
}

fn main() {}
