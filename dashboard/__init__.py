"""The Streamlit dashboard: it talks to the coordinator's admin API only, never to its database."""
