from django.urls import path

from .views import meta_view, nginx_view, post_view, scheme_view, slow_view

urlpatterns = [
    path("test_load_banlance/", nginx_view),  # the article's path, typo included
    path("post/", post_view),
    path("slow/", slow_view),
    path("scheme/", scheme_view),
    path("meta/", meta_view),
    path("", nginx_view),
]
