#[derive(herald_macros::Event)]
#[herald(
    event_type = "e",
    topics("t"),
    notification = "n",
    category = "batch",
    priority = "low",
    handling = "custom",
    recipient(user = user_id),
)]
struct Created {
    user_id: String,
}

fn main() {}
