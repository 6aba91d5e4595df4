#[derive(herald_macros::Event)]
struct Created {
    user_id: String,
}

fn main() {}
