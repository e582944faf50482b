"""action_id / callback_id / block_id constants shared by builders and handlers."""

# App Home
HOME_ADD_ACCOUNT = "home_add_account"
HOME_SEARCH = "home_search"
HOME_FILTER = "home_filter"  # value: all|unread|archived|linked|unlinked
HOME_ACCOUNT_MENU = "home_account_menu"  # overflow: edit|reconnect|pause|resume|log|remove
HOME_TEMPLATES = "home_templates"
HOME_TEMPLATE_NEW = "home_template_new"
HOME_TEMPLATE_EDIT = "home_template_edit"  # value: template id
HOME_TEMPLATE_DELETE = "home_template_delete"  # value: template id
HOME_CLIENTS = "home_clients"
HOME_CLIENT_NEW = "home_client_new"
HOME_PAGE = "home_page"

# Conversation (parent message and thread) buttons; value: conversation id (or message id)
CONV_OPEN = "conv_open"
CONV_REPLY = "conv_reply"
CONV_REPLY_ALL = "conv_reply_all"
CONV_FORWARD = "conv_forward"
CONV_ARCHIVE = "conv_archive"
CONV_UNARCHIVE = "conv_unarchive"
CONV_MARK_UNREAD = "conv_mark_unread"
CONV_DELETE = "conv_delete"
CONV_LINK = "conv_link"
CONV_UNLINK = "conv_unlink"
CONV_MORE = "conv_more"  # overflow menu with the less common actions
EMAIL_PREV = "email_prev"  # Previous / Next email in the Open modal; value "<conv>:<msg>"
EMAIL_NEXT = "email_next"
SEND_RETRY = "send_retry"  # value: outbox id
SEND_ANYWAY = "send_anyway"

# Modals (callback_id)
VIEW_OPEN_EMAIL = "view_open_email"
VIEW_COMPOSE = "view_compose"  # new mail, reply, reply all, forward (mode in private_metadata)
VIEW_LINK_CLIENT = "view_link_client"
VIEW_CONFIRM_DELETE = "view_confirm_delete"
VIEW_CONFIRM_UNLINK = "view_confirm_unlink"
VIEW_TEMPLATE_EDIT = "view_template_edit"
VIEW_SEARCH = "view_search"
VIEW_ACCOUNT_ADD = "view_account_add"
VIEW_ACCOUNT_EDIT = "view_account_edit"
VIEW_ACCOUNT_REMOVE = "view_account_remove"
VIEW_SYNC_LOG = "view_sync_log"
VIEW_CLIENT_EDIT = "view_client_edit"

# Inputs inside modals
COMPOSE_TEMPLATE_PICK = "compose_template_pick"
COMPOSE_FROM = "compose_from"
LINK_CLIENT_SELECT = "link_client_select"  # external_select, options from the client list
SEARCH_QUERY = "search_query"  # dispatch_action on character entry: live results
ACCOUNT_TEST_CONNECTION = "account_test_connection"
ACCOUNT_PROVIDER_PICK = "account_provider_pick"

# Global shortcut and slash command
SHORTCUT_COMPOSE = "mailroom_compose"
SLASH_COMMAND = "/inbox"

# --- Commands, search, App Home admin (helper "commands & home") ---
# Buttons sharing a block get a ":suffix" after these prefixes (action_ids must be unique per
# block); listeners match the prefix with a regex.
RESULTS_PAGE = "results_page"  # Next/Previous under ephemeral results; value: JSON paging state
SEARCH_FILTER = "search_filter"  # static_select in the search modal
SEARCH_PAGE = "search_page"  # Next/Previous inside the search modal; value: page number
HOME_CLIENT_EDIT = "home_client_edit"  # value: client id
HOME_CLIENT_TIMELINE = "home_client_timeline"  # value: client id
ACCOUNT_REFRESH_FOLDERS = "account_refresh_folders"  # edit modal: fetch the folder list again

# --- Gmail / Microsoft 365 connect (helper "oauth connect") ---
VIEW_ACCOUNT_OAUTH = "view_account_oauth"  # channel / frequency / auto-link before signing in
VIEW_ACCOUNT_OAUTH_LINK = "view_account_oauth_link"  # the sign-in link button
ACCOUNT_OAUTH_OPEN = "account_oauth_open"  # the URL button; the listener only acks

# IMAP accounts: re-entering a password (the way out of Needs re-authorisation)
VIEW_ACCOUNT_PASSWORD = "view_account_password"

# Typing in a thread (the author's ephemeral prompt); value: the thread draft's id only
TYPED_SEND = "typed_send"
TYPED_SEND_ALL = "typed_send_all"
TYPED_EDIT = "typed_edit"
TYPED_NOTE = "typed_note"
COMPOSE_DISCARD_DRAFT = "compose_discard_draft"  # in the compose modal; value: draft id
# App Home, under each account: Sync now (every provider) and Edit connection (IMAP).
HOME_ACCOUNT_SYNC_NOW = "home_account_sync_now"
HOME_ACCOUNT_EDIT_CONNECTION = "home_account_edit_connection"
VIEW_ACCOUNT_CONNECTION = "view_account_connection"  # servers, ports, security, logins
HOME_NEW_EMAIL = "home_new_email"  # the compose modal, from the App Home
# Clients in the App Home (everyone) and their admin extras.
HOME_CLIENT_SEARCH = "home_client_search"  # the search box (dispatches on Enter)
HOME_CLIENT_SEARCH_CLEAR = "home_client_search_clear"
HOME_CLIENT_IMPORT = "home_client_import"  # admins: the CSV upload modal
VIEW_CLIENT_IMPORT = "view_client_import"
VIEW_CLIENT_DELETE = "view_client_delete"
