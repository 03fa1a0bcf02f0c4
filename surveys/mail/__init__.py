"""Email: the messages customers and managers receive (messages.py), their MIME shape (mime.py), the SMTP
backend used with EMAIL_HOST (smtp.py) and the development backend writing .eml files (files.py)."""
