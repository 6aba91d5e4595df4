#[derive(herald_macros::Event)]
#[herald(
    event_type = "e",
    topics("t"),
    notification = "n",
    category = "batch_progress",
    priority = "low",
    recipient(user = no_such_field),
)]
struct Created {
    user_id: String,
}

fn main() {}
