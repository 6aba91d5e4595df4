#[derive(herald_macros::Event)]
#[herald(
    event_type = "e",
    topics("t"),
    notification = "n",
    category = "batch_progress",
    priority = "low",
    recipient(user = user_id),
    dedupe_ttl_seconds = 0,
)]
struct Created {
    user_id: String,
}

fn main() {}
