"""CSV imports: customers (customers.py, `manage.py import_customers` and the admin upload) and past
responses (history.py, `manage.py import_responses`), both read by one reader (reader.py)."""
