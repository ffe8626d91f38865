"""poolstride's Streamlit dashboard."""
