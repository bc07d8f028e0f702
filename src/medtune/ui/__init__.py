"""The Streamlit chat UI (``medtune ui``): a chat page over the guarded Assistant and a Runs page.

``app.py`` is the Streamlit entry script; the other modules hold plain-Python helpers (feedback store,
run-folder loading, conversation export) so they can be tested and reused without a running server.
"""
