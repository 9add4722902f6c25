"""The numbers and figures behind the App panels."""
