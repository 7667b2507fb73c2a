"""Thin Tornado handlers: parse the request, call one service function, write the answer."""
