#[derive(herald_macros::Event)]
#[herald(notification = "n", category = "batch_progress", forward(user_id))]
struct Created {
    user_id: String,
}

fn main() {}
