"""action_id / callback_id / block_id constants shared by builders and handlers."""

# App Home
HOME_ADD_ACCOUNT = "home_add_account"
