#[derive(herald_macros::Event)]
#[herald(
    event_type = "e",
    topics("t"),
    notification = "n",
    category = "batch_progress",
    priority = "low",
    recipient(user = user_id),
    forward(user_id, batch_id, user_id),
)]
struct Created {
    user_id: String,
    batch_id: String,
}

fn main() {}
