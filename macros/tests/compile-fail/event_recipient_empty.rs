#[derive(herald_macros::Event)]
#[herald(event_type = "e", topics("t"), notification = "n", category = "batch_progress", priority = "low", recipient())]
struct Created {
    user_id: String,
}

fn main() {}
