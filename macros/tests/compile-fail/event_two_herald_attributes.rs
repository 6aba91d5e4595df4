#[derive(herald_macros::Event)]
#[herald(event_type = "e", topics("t"), notification = "n")]
#[herald(category = "batch_progress", priority = "low", recipient(user = user_id))]
struct Created {
    user_id: String,
}

fn main() {}
