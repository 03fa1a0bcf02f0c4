"""The pages people use: the customer's survey, thank-you, unsubscribe and share pages (survey.py), the
managers' cases (cases.py) and dashboard (dashboard.py), their forms and the request-wide middleware."""
