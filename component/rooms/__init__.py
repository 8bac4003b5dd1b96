"""Group chats (XEP-0045 MUC): the rooms the bots sit in. `manager` joins them and keeps them joined, `protocol`
writes and reads the MUC stanzas, `store` keeps the rooms added through the send API."""
